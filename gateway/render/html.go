package render

import (
	"fmt"
	"html"
	"io"
	"strings"

	xhtml "golang.org/x/net/html"
)

// rawText holds the elements whose content the tokenizer (like a browser)
// reads as raw text or RCDATA rather than markup. A placeholder there is
// refused:
//   - script and style are code: a value there is executed or becomes CSS,
//     which can fetch URLs;
//   - textarea holds a form field's value, which a form submits to the URL
//     the core chose;
//   - title is not shown in a mail body; iframe, noembed, noframes, noscript
//     and xmp are parsed differently depending on the reader's settings, so
//     what is "text" there is not certain; plaintext swallows the rest of the
//     document.
//
// The set is the tokenizer's own, so our view and its view of the document
// cannot differ.
var rawText = map[string]bool{
	"iframe": true, "noembed": true, "noframes": true, "noscript": true,
	"plaintext": true, "script": true, "style": true, "textarea": true,
	"title": true, "xmp": true,
}

// block holds tags that end a visible word (see wordGuard): a mail client's
// link detection does not join text across them.
var block = map[string]bool{
	"address": true, "article": true, "aside": true, "blockquote": true,
	"br": true, "caption": true, "center": true, "dd": true, "div": true,
	"dl": true, "dt": true, "figcaption": true, "figure": true, "footer": true,
	"form": true, "h1": true, "h2": true, "h3": true, "h4": true, "h5": true,
	"h6": true, "header": true, "hr": true, "li": true, "main": true,
	"nav": true, "ol": true, "p": true, "pre": true, "section": true,
	"table": true, "tbody": true, "td": true, "tfoot": true, "th": true,
	"thead": true, "tr": true, "ul": true,
}

// html renders the HTML body. Every token other than a text node is copied
// byte for byte (only \{{ becomes {{), so the core's markup reaches the player
// as the core wrote it; placeholders are filled in text nodes only, with the
// value escaped.
func (r *renderer) html(src string) (string, error) {
	if src == "" {
		return "", nil
	}
	z := xhtml.NewTokenizer(strings.NewReader(src))
	var b strings.Builder
	b.Grow(len(src) + len(src)/16)
	w := wordGuard{part: "html"}
	var (
		off      int    // offset of the current token in src
		rawElem  string // the raw-text element a text token would be the content of
		inOption bool   // inside <option>: its text is the value a form submits
	)
	for {
		tt := z.Next()
		if tt == xhtml.ErrorToken {
			if err := z.Err(); err != io.EOF {
				return "", fmt.Errorf("render: html offset %d: %w", off, err)
			}
			break
		}
		// Raw() partitions the input, so the token is src[off:off+n]. Read it
		// from src: TagName lower-cases the tokenizer's buffer in place.
		n := len(z.Raw())
		tok := src[off : off+n]
		inRaw := rawElem
		rawElem = ""
		var err error
		switch tt {
		case xhtml.TextToken:
			switch {
			case inRaw != "":
				err = forbid(&b, tok, off, "inside <"+inRaw+">")
			case inOption:
				err = forbid(&b, tok, off, "inside <option>")
			default:
				err = r.htmlText(&b, &w, tok, off)
			}
		case xhtml.StartTagToken, xhtml.SelfClosingTagToken, xhtml.EndTagToken:
			if err = forbid(&b, tok, off, "inside a tag"); err != nil {
				break
			}
			name, _ := z.TagName()
			if tt != xhtml.EndTagToken && rawText[string(name)] {
				rawElem = string(name)
			}
			inOption = optionState(inOption, tt, string(name))
			if block[string(name)] {
				err = w.end()
			}
		case xhtml.CommentToken:
			err = forbid(&b, tok, off, "inside a comment")
		case xhtml.DoctypeToken:
			err = forbid(&b, tok, off, "inside a doctype")
		}
		if err != nil {
			return "", err
		}
		off += n
	}
	if err := w.end(); err != nil {
		return "", err
	}
	return b.String(), nil
}

// htmlText renders one text node.
func (r *renderer) htmlText(b *strings.Builder, w *wordGuard, tok string, off int) error {
	if !strings.Contains(tok, "{{") {
		b.WriteString(tok)
		return w.text(html.UnescapeString(tok))
	}
	var last byte
	return scan("html", tok, off, func(lit string) error {
		b.WriteString(lit)
		last = lit[len(lit)-1]
		return w.text(html.UnescapeString(lit))
	}, func(field string, at int) error {
		// "<" followed by a value starting with a letter, "/", "!" or "?"
		// would open a tag or comment: the value would become markup.
		if last == '<' {
			return fmt.Errorf("render: html offset %d: pii.%s right after '<': %w", at, field, ErrPosition)
		}
		v, err := r.resolve("html", at, field)
		if err != nil {
			return err
		}
		v = html.EscapeString(v)
		b.WriteString(v)
		if v != "" {
			last = v[len(v)-1]
		}
		w.placeholder(field, at)
		return nil
	})
}

// forbid copies tok, refusing any placeholder in it.
func forbid(b *strings.Builder, tok string, off int, where string) error {
	if !strings.Contains(tok, "{{") {
		b.WriteString(tok)
		return nil
	}
	return scan("html", tok, off, func(lit string) error {
		b.WriteString(lit)
		return nil
	}, func(field string, at int) error {
		return fmt.Errorf("render: html offset %d: pii.%s %s: %w", at, field, where, ErrPosition)
	})
}

// optionState tracks whether the tokenizer is inside an <option>, whose text
// is the value a form submits when the option has no value attribute. It errs
// towards "inside": an option ends only at </option>, <optgroup>,
// </optgroup>, </select> or </datalist>.
func optionState(in bool, tt xhtml.TokenType, name string) bool {
	switch {
	case name == "option" && tt != xhtml.EndTagToken:
		return true
	case name == "option", name == "optgroup", name == "select" && tt == xhtml.EndTagToken,
		name == "datalist" && tt == xhtml.EndTagToken:
		return false
	}
	return in
}
