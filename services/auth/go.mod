module github.com/smtpgate/smtpgate/services/auth

go 1.26.0

require (
	github.com/smtpgate/smtpgate/pkg v0.0.0
	github.com/smtpgate/smtpgate/proto v0.0.0
)

require golang.org/x/crypto v0.58.0 // indirect

replace github.com/smtpgate/smtpgate/proto => ../../proto

replace github.com/smtpgate/smtpgate/pkg => ../../pkg
