package main

import (
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// redisLog sends go-redis's own messages (a failed dial, say) to the
// daemon's log at debug level: internal/sharedlimit already reports a
// Redis outage once, rate-limited, in words an operator can act on.
type redisLog struct{ log zerolog.Logger }

func (l redisLog) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug().Str("component", "go-redis").Msg(fmt.Sprintf(format, v...))
}

// quietRedis installs redisLog as go-redis's process-wide logger.
func quietRedis(log zerolog.Logger) { redis.SetLogger(redisLog{log: log}) }
