module github.com/emersion/go-msgauth

go 1.23

require (
	filippo.io/bigmod v0.1.0
	golang.org/x/crypto v0.31.0
)

require golang.org/x/sys v0.28.0 // indirect
