module github.com/smtpgate/smtpgate/services/edge

go 1.26.0
