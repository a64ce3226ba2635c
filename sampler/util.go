package sampler

import "strconv"

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }
