package remote

import (
	"context"
	"time"
)

// SetSleep replaces how the client waits between retries (tests).
func SetSleep(c *Client, f func(context.Context, time.Duration) error) { c.sleep = f }
