package smtpreply

import "testing"

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		code       int
		text, want string
	}{
		{250, "OK", "250 OK\r\n"},
		{550, "first\nsecond\nthird", "550-first\r\n550-second\r\n550 third\r\n"},
		{334, "", "334 \r\n"},
		{421, "4.3.0 host bye\r\n", "421 4.3.0 host bye\r\n"},
	} {
		if got := Format(tc.code, tc.text); got != tc.want {
			t.Errorf("Format(%d, %q) = %q want %q", tc.code, tc.text, got, tc.want)
		}
	}
}

func TestSplitEnhanced(t *testing.T) {
	c, s, d, rest, ok := SplitEnhanced("5.7.1 relaying not permitted")
	if !ok || c != 5 || s != 7 || d != 1 || rest != "relaying not permitted" {
		t.Fatal(c, s, d, rest, ok)
	}
	for _, in := range []string{"OK ids=abc", "1.2.3 nope", "5.x.1 bad", "", "4.4.4"} {
		if _, _, _, _, ok := SplitEnhanced(in); ok && in != "4.4.4" {
			t.Errorf("%q must not parse", in)
		}
	}
}

func TestRejectionCloses(t *testing.T) {
	if (&Rejection{Code: 550}).Closes() || !(&Rejection{Code: 421}).Closes() ||
		!(&Rejection{Code: 451, Mode: ForceDisconnect}).Closes() || !(&Rejection{Code: 550, Mode: FollowWith421}).Closes() {
		t.Fatal("Closes")
	}
	if (&Rejection{Code: 550, Text: "5.7.1 no"}).Error() != "550 5.7.1 no" {
		t.Fatal("Error")
	}
}
