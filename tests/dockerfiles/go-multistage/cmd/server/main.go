package main

import (
	"fmt"

	"example.invalid/server/internal/greet"
)

var version = "dev"

func main() {
	fmt.Println("server", version)
	fmt.Println(greet.Greeting)
}
