package greet

// Greeting is printed at start-up.
const Greeting = "hello, builder"
