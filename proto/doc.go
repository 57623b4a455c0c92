// Package proto holds the smtpgate gRPC APIs: the .proto sources (a buf
// module rooted here) and the Go code generated from them, committed beside
// them. Run scripts/gen after editing a .proto file; TestGeneratedCodeIsFresh
// fails while the committed code is stale.
package proto
