module github.com/smtpgate/smtpgate/services/auth

go 1.26.0

require (
	github.com/redis/go-redis/v9 v9.23.0
	github.com/smtpgate/smtpgate/pkg v0.0.0
	github.com/smtpgate/smtpgate/proto v0.0.0
	github.com/xdg-go/scram v1.4.0
	google.golang.org/grpc v1.85.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/xdg-go/stringprep v1.0.4 // indirect
	go.uber.org/atomic v1.12.0 // indirect
)

require (
	golang.org/x/crypto v0.58.0
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1 // indirect
	google.golang.org/protobuf v1.36.12 // indirect
)

replace github.com/smtpgate/smtpgate/proto => ../../proto

replace github.com/smtpgate/smtpgate/pkg => ../../pkg
