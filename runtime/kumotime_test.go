package runtime

import "testing"

func TestKumoTime(t *testing.T) {
	r := newRuntime(t, `
local function eq(a, b, what)
  if a ~= b then error(what .. ': got ' .. tostring(a) .. ', want ' .. tostring(b), 2) end
end
kumo.on('t', function()
  local t = kumo.time.with_ymd_hms(2000, 01, 02, 03, 04, 05)
  eq(tostring(t), '2000-01-02 03:04:05 UTC', 'tostring'); eq(t.year, 2000, 'year'); eq(t.month, 1, 'month')
  eq(t.day, 2, 'day'); eq(t.hour, 3, 'hour'); eq(t.minute, 4, 'minute'); eq(t.second, 5, 'second')
  eq(t.unix_timestamp, 946782245, 'unix'); eq(t.unix_timestamp_millis, 946782245000, 'millis')
  eq(t.rfc3339, '2000-01-02T03:04:05Z', 'rfc3339'); eq(t.rfc2822, 'Sun, 02 Jan 2000 03:04:05 +0000', 'rfc2822')
  eq(t:format '%H:%M:%S', '03:04:05', 'format')
  eq(kumo.time.parse_rfc2822 'Sun, 2 Jan 2000 03:04:05 +0000', t, 'parse_rfc2822')
  eq(kumo.time.parse_rfc3339 '2000-01-02T04:04:05+01:00', t, 'parse_rfc3339 with offset')
  eq(kumo.time.from_unix_timestamp(946782245), t, 'from_unix_timestamp')
  local later = t + kumo.time.parse_duration '1 hour'
  eq(later.hour, 4, 'add'); eq((later - t).seconds, 3600, 'sub times'); eq((later - kumo.time.parse_duration(3600)), t, 'sub delta')
  assert(t < later)
  assert(kumo.time.now().unix_timestamp > 1700000000)
  assert(not pcall(kumo.time.with_ymd_hms, 2000, 13, 1, 0, 0, 0))
  assert(not pcall(kumo.time.parse_rfc3339, 'yesterday'))
  local timer = kumo.time.start_timer 'op'
  assert(timer:done().seconds >= 0)
  return true
end)`)
	defer r.Close()
	if out := run(t, r); out[0] != true {
		t.Fatal(out)
	}
}
