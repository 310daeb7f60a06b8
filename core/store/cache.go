package store

// playerCache holds, on SQLite, the committed state of the players Ingest
// saw last, so that a batch reads from the file only the players it has
// not seen lately. It is coherent because the store's process is the
// file's only writer (the lock file sees to that), every write of players
// (Ingest, ApplyTokenPairs) runs on the one writer goroutine, and that
// goroutine updates the cache only after its transaction committed. A player that does not exist is
// cached too.
//
// It keeps between max/2 and max players: two generations, the older
// dropped whole when the newer fills, and a player read from the older
// moved to the newer.
type playerCache struct {
	max      int
	cur, old map[ckey]cachedPlayer
}

type ckey struct{ label, brand, user string }

type cachedPlayer struct {
	exists                bool
	raw                   string // properties as stored
	lastOnline, firstSeen int64
}

// DefaultPlayerCache is Config.PlayerCache's default.
const DefaultPlayerCache = 100_000

func newPlayerCache(max int) *playerCache {
	if max < 2 {
		max = 2
	}
	return &playerCache{max: max, cur: make(map[ckey]cachedPlayer)}
}

func (c *playerCache) get(k ckey) (cachedPlayer, bool) {
	if v, ok := c.cur[k]; ok {
		return v, true
	}
	v, ok := c.old[k]
	if ok {
		delete(c.old, k)
		c.put(k, v)
	}
	return v, ok
}

func (c *playerCache) put(k ckey, v cachedPlayer) {
	if _, ok := c.cur[k]; !ok && len(c.cur) >= c.max/2 {
		c.old, c.cur = c.cur, make(map[ckey]cachedPlayer, c.max/2)
	}
	c.cur[k] = v
}
