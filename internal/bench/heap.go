package bench

import (
	"runtime"
)

// LiveHeap returns the bytes of heap that are live: the heap in use right
// after two forced collections. The second frees what sync.Pools kept in
// their victim caches through the first; what runs up between collections
// (up to GOGC percent more) is garbage, not counted here.
func LiveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// HeapInUse returns the heap allocated now, live or garbage: what a
// process's go_memstats_heap_alloc_bytes says without a collection.
func HeapInUse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// MB returns b in megabytes (10^6 bytes).
func MB(b uint64) float64 { return float64(b) / 1e6 }
