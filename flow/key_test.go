package flow

import (
	"testing"
	"unsafe"
)

// TestKeyHasNoPadding keeps Key plain memory: equal keys are equal
// bytes, which lets the runtime hash and compare it as a block.
func TestKeyHasNoPadding(t *testing.T) {
	var k Key
	fields := unsafe.Sizeof(k.SrcAddr) + unsafe.Sizeof(k.DstAddr) + unsafe.Sizeof(k.Ifindex) + unsafe.Sizeof(k.VNI) +
		unsafe.Sizeof(k.SrcPort) + unsafe.Sizeof(k.DstPort) + unsafe.Sizeof(k.VLAN) + unsafe.Sizeof(k.InnerVLAN) +
		unsafe.Sizeof(k.Proto) + unsafe.Sizeof(k.Direction) + unsafe.Sizeof(k.IPVersion) + unsafe.Sizeof(k.Tunnel)
	if size := unsafe.Sizeof(k); size != fields {
		t.Errorf("Key is %d bytes for %d bytes of fields", size, fields)
	}
}
