module github.com/smtpgate/smtpgate/services/policy

go 1.26.0

require github.com/smtpgate/smtpgate/pkg v0.0.0

require github.com/google/go-cmp v0.7.0

replace github.com/smtpgate/smtpgate/proto => ../../proto

replace github.com/smtpgate/smtpgate/pkg => ../../pkg
