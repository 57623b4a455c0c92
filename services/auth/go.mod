module github.com/smtpgate/smtpgate/services/auth

go 1.26.0
