package sampler

import "strconv"

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

// ifSlots is VIGIL_IF_SLOTS: ifindexes below it are counted in the
// if_stats array, the rest in the if_stats_big hash.
const ifSlots = 1024
