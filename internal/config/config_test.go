package config

import (
	"testing"
	"time"
)

func TestProblems(t *testing.T) {
	var sub Problems
	sub.Add("ca_file", "missing")
	sub.Add("", "whole section")
	sub.HostPort("addr", "127.0.0.1:99999")
	sub.HostPort("ok", "127.0.0.1:9092")
	sub.OneOf("format", "xml", "json", "protobuf")
	sub.Duration("timeout", Duration{D: -time.Second}, false)
	sub.Duration("zero", Duration{}, true)
	var root Problems
	root.In("export.kafka[0].tls", sub[:2])
	root.In("export.kafka", Problems{{Field: "[1]", Msg: "m"}})
	root.In("x", sub[2:])
	want := []string{
		"export.kafka[0].tls.ca_file: missing",
		"export.kafka[0].tls: whole section",
		"export.kafka[1]: m",
		`x.addr: "127.0.0.1:99999" is not HOST:PORT`,
		`x.format: "xml" is not json, protobuf`,
		"x.timeout: must be positive, got -1s",
	}
	if len(root) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(root), len(want), root)
	}
	for i, p := range root {
		if got := fieldError(p).Error(); got != want[i] {
			t.Errorf("problem %d: got %q, want %q", i, got, want[i])
		}
	}
	if (Problems{}).Err() != nil {
		t.Error("no problems must be no error")
	}
}
