package core

import (
	"fmt"

	"github.com/blindpost/blindpost/envelope"
)

// LoadGatewayKeys reads the gateway signing keys that gateway_keys names:
// the keys a token pairs file must be signed by.
func (c *Config) LoadGatewayKeys() ([]*envelope.VerifyingKey, error) {
	var keys []*envelope.VerifyingKey
	for i, p := range c.GatewayKeys {
		k, err := envelope.LoadVerifyingKey(p)
		if err != nil {
			return nil, fmt.Errorf("%w: gateway_keys[%d]: %v", ErrConfig, i, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}
