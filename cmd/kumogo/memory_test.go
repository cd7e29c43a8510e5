package main

import "testing"

func TestLuaMemoryLimitOption(t *testing.T) {
	for _, c := range []struct {
		flag, env string
		want      int64
		bad       bool
	}{
		{"", "", 0, false}, // runtime's default
		{"268435456", "", 268435456, false},
		{"64MiB", "", 64 << 20, false},
		{"64 mb", "", 64e6, false},
		{"1.5GiB", "", 3 << 29, false},
		{"2g", "", 2 << 30, false},
		{"off", "", -1, false},
		{"0", "", -1, false},
		{"", "32MiB", 32 << 20, false},
		{"16MiB", "32MiB", 16 << 20, false}, // the flag wins
		{"lots", "", 0, true},
		{"-5MiB", "", 0, true},
		{"5 furlongs", "", 0, true},
	} {
		t.Setenv("KUMOGO_LUA_MEMORY_LIMIT", c.env)
		got, err := luaMemoryLimit(c.flag)
		if (err != nil) != c.bad || got != c.want {
			t.Errorf("flag %q env %q: %d, %v; want %d (error: %v)", c.flag, c.env, got, err, c.want, c.bad)
		}
	}
}
