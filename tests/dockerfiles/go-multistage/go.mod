module example.invalid/server

go 1.22

require example.invalid/lib v1.4.0
