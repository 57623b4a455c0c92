package telemetry

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestNewLogger(t *testing.T) {
	var b bytes.Buffer
	log, err := NewLogger(&b, "edge", "json", "warn")
	if err != nil {
		t.Fatal(err)
	}
	log.Info("hidden")
	log.Warn("shown", "queue_id", "ABC")
	var rec map[string]any
	if err := json.Unmarshal(b.Bytes(), &rec); err != nil {
		t.Fatalf("one JSON record expected, got %q: %v", b.String(), err)
	}
	if rec["msg"] != "shown" || rec["service"] != "edge" || rec["queue_id"] != "ABC" {
		t.Errorf("record = %v", rec)
	}
	b.Reset()
	log, _ = NewLogger(&b, "auth", "text", "debug")
	log.Debug("d")
	if !strings.Contains(b.String(), "service=auth") {
		t.Errorf("text record = %q", b.String())
	}
	if _, err := NewLogger(&b, "x", "xml", "info"); err == nil {
		t.Error("bad format accepted")
	}
	if _, err := NewLogger(&b, "x", "text", "loud"); err == nil {
		t.Error("bad level accepted")
	}
}
