// Package externalgrpc holds the externalgrpc wire contract (externalgrpc.proto) and the Go code
// protoc generates from it. Regenerate with `go generate ./cloudprovider/externalgrpc`; a test
// checks that the committed code is what generation gives.
package externalgrpc

//go:generate sh -c "protoc --plugin=protoc-gen-go=$(go tool -n protoc-gen-go) --plugin=protoc-gen-go-grpc=$(go tool -n protoc-gen-go-grpc) --go_out=. --go_opt=paths=source_relative --go-grpc_out=. --go-grpc_opt=paths=source_relative externalgrpc.proto"
