package runtime

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUtilityModules checks kumo.regex, kumo.string, kumo.digest,
// kumo.encode, kumo.uuid and kumo.secrets against the examples of
// KumoMTA's reference pages.
func TestUtilityModules(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := newRuntime(t, `
local function eq(a, b, what)
  if a ~= b then error(what .. ': got ' .. tostring(a) .. ', want ' .. tostring(b), 2) end
end
kumo.on('t', function(secret)
  local re = kumo.regex.compile "'([^']+)'\\s+\\((\\d{4})\\)"
  local cap = re:captures "Not my favorite movie: 'Citizen Kane' (1941)."
  eq(cap[0], "'Citizen Kane' (1941)", 'cap0'); eq(cap[1], 'Citizen Kane', 'cap1'); eq(cap[2], '1941', 'cap2')
  re = kumo.regex.compile "'(?<title>[^']+)'\\s+\\((?<year>\\d{4})\\)"
  cap = re:captures "Not my favorite movie: 'Citizen Kane' (1941)."
  eq(cap.title, 'Citizen Kane', 'title'); eq(cap.year, '1941', 'year')
  eq(re:captures 'nothing', nil, 'no captures')
  assert(kumo.regex.compile('oo'):is_match 'foo')
  eq(kumo.regex.compile('o+'):find 'fooood', 'oooo', 'find')
  eq(kumo.json_encode(kumo.regex.compile('\\b\\w{13}\\b'):find_all 'Retroactively relinquishing remunerations is reprehensible.'),
    '["Retroactively","relinquishing","remunerations","reprehensible"]', 'find_all')
  eq(kumo.regex.compile('[^01]+'):replace('1078910', ''), '1010', 'replace')
  eq(kumo.regex.compile('(?P<last>[^,\\s]+),\\s+(?P<first>\\S+)'):replace('Springsteen, Bruce', '$first $last'), 'Bruce Springsteen', 'replace names')
  eq(kumo.regex.compile('a'):replace_all('banana', 'o'), 'bonono', 'replace_all')
  eq(kumo.regex.compile('a'):replacen('banana', 2, 'o'), 'bonona', 'replacen')
  eq(kumo.json_encode(kumo.regex.compile('[ \\t]+'):split 'a b \t  c\td    e'), '["a","b","c","d","e"]', 'split')
  eq(kumo.regex.escape('a.b*c'), 'a\\.b\\*c', 'escape')
  local ok, err = pcall(kumo.regex.compile, '(')
  assert(not ok and tostring(err):find('kumo.regex.compile'), tostring(err))
  local rx = require 'kumo.regex'
  assert(rx == kumo.regex)

  local S = kumo.string
  eq(kumo.json_encode(S.split('Mary had a little lamb', ' ')), '["Mary","had","a","little","lamb"]', 'split')
  eq(kumo.json_encode(S.splitn('Mary had a little lamb', 3, ' ')), '["Mary","had","a little lamb"]', 'splitn')
  eq(kumo.json_encode(S.rsplit('Mary had a little lamb', ' ')), '["lamb","little","a","had","Mary"]', 'rsplit')
  eq(kumo.json_encode(S.rsplitn('Mary had a little lamb', 3, ' ')), '["lamb","little","Mary had a"]', 'rsplitn')
  eq(kumo.json_encode(S.split_whitespace(' a  b\tc ')), '["a","b","c"]', 'split_whitespace')
  eq(S.trim('  x  '), 'x', 'trim'); eq(S.trim_start('  x  '), 'x  ', 'trim_start'); eq(S.trim_end('  x  '), '  x', 'trim_end')
  assert(S.starts_with('hello', 'he') and not S.starts_with('hello', 'lo') and S.ends_with('hello', 'lo'))
  eq(S.replace('a.b.c', '.', '-'), 'a-b-c', 'replace'); eq(S.replacen('a.b.c', '.', '-', 1), 'a-b.c', 'replacen')
  eq(S.psl_domain('www.example.co.uk'), 'example.co.uk', 'psl_domain'); eq(S.psl_suffix('www.example.co.uk'), 'co.uk', 'psl_suffix')
  eq(S.wrap 'hello', 'hello', 'wrap short')
  eq(S.wrap(string.rep('A', 200), 75, 100), string.rep('A', 100) .. '\r\n\t' .. string.rep('A', 100), 'wrap long')
  eq(S.wrap(string.rep('hello there ', 10), 75, 100),
    'hello there hello there hello there hello there hello there hello there\r\n\thello there hello there hello there hello there', 'wrap spaced')

  local d = kumo.digest.sha1 'hello'
  eq(tostring(d), d.hex, 'tostring digest'); eq(d.hex, 'aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d', 'sha1')
  eq(d.base32, 'VL2MMHO4YXUKFWV63YHTWSBM3GXKSQ2N', 'base32'); eq(d.base32hex, 'LBQCC7ESONKA5MLURO7JMI1CR6NAIGQD', 'base32hex')
  eq(d.base64, 'qvTGHdzF6KLavt4PO0gs2a6pQ00=', 'base64'); eq(d.base64url_nopad, 'qvTGHdzF6KLavt4PO0gs2a6pQ00', 'b64url')
  eq(kumo.digest.sha256('hel', 'lo').hex, kumo.digest.sha256('hello').hex, 'multi-arg')
  eq(kumo.digest.sha256({1, 2}).hex, kumo.digest.sha256('[1,2]').hex, 'json arg')
  eq(kumo.digest.hmac_sha256({ key_data = 'your key' }, 'your message').hex,
    '87fc1cec5c02f0991ae80f50e98eb2eb5213d07fc40417682a74448ac1deb07c', 'hmac')

  local u = kumo.uuid.parse '69994630-3e27-11ef-91fc-cc28aa0a5c5a'
  eq(tostring(u), '69994630-3e27-11ef-91fc-cc28aa0a5c5a', 'uuid'); eq(u.simple, '699946303e2711ef91fccc28aa0a5c5a', 'simple')
  eq(u.braced, '{69994630-3e27-11ef-91fc-cc28aa0a5c5a}', 'braced'); eq(u.urn, 'urn:uuid:69994630-3e27-11ef-91fc-cc28aa0a5c5a', 'urn')
  eq(kumo.encode.base64url_nopad_encode(u.bytes), 'aZlGMD4nEe-R_MwoqgpcWg', 'uuid bytes')
  assert(kumo.uuid.new_v4().hyphenated ~= kumo.uuid.new_v4().hyphenated)
  eq(#kumo.uuid.new_v7().simple, 32, 'v7')
  assert(not pcall(kumo.uuid.parse, 'nope'))

  eq(kumo.encode.base64_decode(kumo.encode.base64_encode('x\0y')), 'x\0y', 'b64 roundtrip')
  eq(kumo.encode.hex_encode('AB'), '4142', 'hex'); eq(kumo.encode.base32_nopad_encode('a'), 'ME', 'b32 nopad')
  assert(not pcall(kumo.encode.base64_decode, '!!!'))
  eq(kumo.encode.charset_encode('iso-8859-1', 'é'), '\233', 'latin1 encode')
  eq(kumo.encode.charset_decode('iso-8859-1', '\233'), 'é', 'latin1 decode')

  eq(kumo.secrets.load(secret), 's3cret', 'secret path'); eq(kumo.secrets.load { key_data = 'inline' }, 'inline', 'key_data')
  local ok2, err2 = pcall(kumo.secrets.load, secret .. '.missing')
  assert(not ok2 and tostring(err2):find('no such file'), tostring(err2))
  return true
end)`)
	defer r.Close()
	out := run(t, r, secret)
	if out[0] != true {
		t.Fatalf("out = %v", out)
	}
	if _, err := r.Call(t.Context(), "t", secret+"x"); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatal("want error")
	}
}
