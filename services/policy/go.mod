module github.com/smtpgate/smtpgate/services/policy

go 1.26.0
