module github.com/smtpgate/smtpgate/services/edge

go 1.26.0

require (
	github.com/smtpgate/smtpgate/pkg v0.0.0
	github.com/smtpgate/smtpgate/proto v0.0.0
)

replace github.com/smtpgate/smtpgate/proto => ../../proto

replace github.com/smtpgate/smtpgate/pkg => ../../pkg
