package smtpreply

import "testing"

func TestClassify(t *testing.T) {
	cases := []struct {
		code    int
		content string
		want    Outcome
	}{
		{250, "ok", Delivery},
		{251, "forwarded", Delivery},
		{421, "bye", TransientFailure},
		{451, "later", TransientFailure},
		{354, "odd", TransientFailure},
		{503, "bad sequence", TransientFailure},
		{550, "no such user", Bounce},
		{554, "Too Many Recipients for this message", TransientFailure},
		{552, "too many recipients", TransientFailure},
		{500, "syntax", Bounce},
		{400, "KumoMTA internal: failed to send message: x", TransientFailure},
		{0, "", TransientFailure},
		{600, "", TransientFailure},
	}
	for _, c := range cases {
		if got := Classify(c.code, c.content); got != c.want {
			t.Errorf("Classify(%d, %q) = %v, want %v", c.code, c.content, got, c.want)
		}
	}
	if Delivery.String() != "Delivery" || Bounce.String() != "Bounce" || TransientFailure.String() != "TransientFailure" {
		t.Error("outcome names")
	}
}

func TestResponseString(t *testing.T) {
	for _, c := range []struct {
		r    Response
		want string
	}{
		{Response{Code: 250, Content: "ok"}, "250 ok"},
		{Response{Code: 550, Enhanced: &EnhancedCode{5, 1, 1}, Content: "no such\nuser"}, "550 5.1.1 no such user"},
		{Response{Code: 421}, "421 "},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("%+v: %q, want %q", c.r, got, c.want)
		}
	}
}

func TestParseResponse(t *testing.T) {
	r := Parse(550, "5.1.1 no such user")
	if r.Enhanced == nil || *r.Enhanced != (EnhancedCode{5, 1, 1}) || r.Content != "no such user" {
		t.Fatalf("%+v", r)
	}
	// the class must agree with the code
	if r := Parse(250, "5.1.1 odd"); r.Enhanced != nil || r.Content != "5.1.1 odd" {
		t.Fatalf("%+v", r)
	}
	if !r.Equal(Parse(550, "5.1.1 no such user")) || r.Equal(Parse(550, "5.1.2 no such user")) || r.Equal(Response{Code: 550, Content: "no such user"}) {
		t.Fatal("Equal")
	}
}
