src/pkg/main.go
