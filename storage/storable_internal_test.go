package storage

import (
	"encoding/json"
	"testing"
	"unicode/utf8"
)

func TestStorableText(t *testing.T) {
	for in, want := range map[string]string{
		"plain é":        "plain é",
		"curl \xff\xfe":  "curl \uFFFD",
		"cut \xc3":       "cut \uFFFD",
		"nul\x00byte":    "nul\uFFFDbyte",
		"":               "",
		"\x00\x00":       "\uFFFD\uFFFD",
		"mixed\x00\xff!": "mixed\uFFFD\uFFFD!",
	} {
		if got := storableText(in); got != want {
			t.Errorf("storableText(%q) = %q, want %q", in, got, want)
		}
	}
}

// storableJSON replaces \u0000 escapes (jsonb refuses them) and nothing that only looks like one.
func TestStorableJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"a":"b"}`, "b"},
		{`{"a":"\u0000"}`, "\uFFFD"},
		{`{"a":"x\u0000y\u0000"}`, "x\uFFFDy\uFFFD"},
		{`{"a":"\\u0000"}`, `\u0000`},          // an escaped backslash, then the letters u0000
		{`{"a":"\\\u0000"}`, "\\\uFFFD"},       // an escaped backslash, then a NUL
		{`{"a":"\"\u0000"}`, "\"\uFFFD"},       // an escaped quote, then a NUL
		{"{\"a\":\"bad \xff\"}", "bad \uFFFD"}, // not UTF-8
	} {
		got := storableJSON([]byte(tc.in))
		if !utf8.Valid(got) {
			t.Errorf("storableJSON(%s) = %q: not UTF-8", tc.in, got)
		}
		var v map[string]string
		if err := json.Unmarshal(got, &v); err != nil {
			t.Errorf("storableJSON(%s) = %s: %v", tc.in, got, err)
			continue
		}
		if v["a"] != tc.want {
			t.Errorf("storableJSON(%s) = %s: a = %q, want %q", tc.in, got, v["a"], tc.want)
		}
	}
}
