package handlers

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// truncate cuts at a character boundary: a User-Agent cut inside "é" must stay valid UTF-8.
func TestTruncateKeepsCharacters(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{strings.Repeat("a", 511) + "é", 512, strings.Repeat("a", 511) + "..."},
		{"ééé", 3, "é..."},
		{"abc", 2, "ab..."},
	} {
		got := truncate(tc.in, tc.n)
		if got != tc.want || !utf8.ValidString(got) {
			t.Errorf("truncate(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
