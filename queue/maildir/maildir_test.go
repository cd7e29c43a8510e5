package maildir

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/kumogo/kumogo/internal/config"
	"github.com/kumogo/kumogo/internal/message"
)

func testMsg(t *testing.T, data string, rcpts ...string) *message.Message {
	t.Helper()
	s, _ := message.ParseAddress("sender@src.example")
	var rs []message.Address
	for _, r := range rcpts {
		a, err := message.ParseAddress(r)
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, a)
	}
	m := message.New(message.NewIDGenerator(), s, rs, []byte(data))
	m.SetMeta("x_box", "inbox")
	return m
}

// readMaildir reads dir with Python's mailbox.Maildir, a maildir reader
// independent of this package, and returns the Subjects.
func readMaildir(t *testing.T, dir string) []string {
	t.Helper()
	out, err := exec.Command("python3", "-c", `import mailbox, sys, json
print(json.dumps(sorted(m['Subject'] for m in mailbox.Maildir(sys.argv[1], create=False))))`, dir).Output()
	if err != nil {
		t.Fatalf("python maildir reader on %s: %v", dir, err)
	}
	var s []string
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestTemplatedMaildirWithModes(t *testing.T) {
	old := syscall.Umask(0o077) // the modes asked for win over the umask
	defer syscall.Umask(old)
	root := t.TempDir()
	dm, fm := uint32(0o750), uint32(0o640)
	r, err := NewRoute(&config.QueueProtocol{MaildirPath: root + "/{{ domain_part }}/{{ local_part }}/{{ meta.x_box }}-{{ sender_domain_part }}", DirMode: &dm, FileMode: &fm})
	if err != nil {
		t.Fatal(err)
	}
	if r.Site() != "maildir:"+root+"/{{ domain_part }}/{{ local_part }}/{{ meta.x_box }}-{{ sender_domain_part }}" {
		t.Fatalf("site %q", r.Site())
	}
	c := New(r, "host.test")
	msg := testMsg(t, "Subject: hello\r\n\r\nbody\r\n", "a@one.example", "b@two.example")
	res, err := c.Send(context.Background(), msg)
	if err != nil || len(res) != 2 {
		t.Fatalf("%v %v", res, err)
	}
	for i, want := range []string{"one.example/a/inbox-src.example", "two.example/b/inbox-src.example"} {
		if res[i].Response.Code != 200 || !strings.Contains(res[i].Response.Content, "wrote to maildir with id=") {
			t.Fatalf("response %d: %+v", i, res[i].Response)
		}
		dir := filepath.Join(root, want)
		if got := readMaildir(t, dir); len(got) != 1 || got[0] != "hello" {
			t.Fatalf("%s: %v", dir, got)
		}
		for _, sub := range []string{"", "cur", "new", "tmp"} {
			fi, err := os.Stat(filepath.Join(dir, sub))
			if err != nil || fi.Mode().Perm() != 0o750 {
				t.Fatalf("%s/%s: %v %v", dir, sub, fi.Mode(), err)
			}
		}
		ents, _ := os.ReadDir(filepath.Join(dir, "new"))
		fi, _ := ents[0].Info()
		if fi.Mode().Perm() != 0o640 {
			t.Fatalf("file mode %v", fi.Mode())
		}
		if tmp, _ := os.ReadDir(filepath.Join(dir, "tmp")); len(tmp) != 0 {
			t.Fatalf("tmp holds %d files", len(tmp))
		}
		id := strings.TrimPrefix(res[i].Response.Content[strings.Index(res[i].Response.Content, "id="):], "id=")
		if ents[0].Name() != id {
			t.Fatalf("file %s, id in response %s", ents[0].Name(), id)
		}
	}
}

func TestWriteFailureIsPerRecipient(t *testing.T) {
	root := t.TempDir()
	// a file where one recipient's maildir should be
	if err := os.WriteFile(filepath.Join(root, "blocked"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := NewRoute(&config.QueueProtocol{MaildirPath: root + "/{{ local_part }}"})
	if err != nil {
		t.Fatal(err)
	}
	res, _ := New(r, "h").Send(context.Background(), testMsg(t, "Subject: x\r\n\r\n", "ok@x.example", "blocked@x.example"))
	if res[0].Response.Code != 200 || res[1].Response.Code != 400 || !strings.Contains(res[1].Response.Content, "blocked@x.example: failed to write to maildir") {
		t.Fatalf("%+v", res)
	}
	if got := readMaildir(t, filepath.Join(root, "ok")); len(got) != 1 {
		t.Fatalf("ok maildir: %v", got)
	}
}

func TestBadTemplate(t *testing.T) {
	if _, err := NewRoute(&config.QueueProtocol{MaildirPath: "/x/{{ local_part "}); err == nil {
		t.Fatal("an unclosed template must fail")
	}
}
