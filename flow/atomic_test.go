package flow

import "sync/atomic"

func atomicAdd(p *int64, v int64) { atomic.AddInt64(p, v) }
