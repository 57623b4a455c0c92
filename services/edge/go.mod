module github.com/smtpgate/smtpgate/services/edge

go 1.26.0

require (
	github.com/smtpgate/smtpgate/pkg v0.0.0
	github.com/smtpgate/smtpgate/proto v0.0.0
)

require (
	github.com/emersion/go-sasl v0.0.0-20241020182733-b788ff22d5a6 // indirect
	github.com/emersion/go-smtp v0.25.1 // indirect
)

replace github.com/smtpgate/smtpgate/proto => ../../proto

replace github.com/smtpgate/smtpgate/pkg => ../../pkg
