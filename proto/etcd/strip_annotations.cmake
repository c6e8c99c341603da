# cmake -DIN=... -DOUT=... -P strip_annotations.cmake
# Copies one of etcd's API .proto files (Debian's golang-etcd-server-dev) without the Go-only
# annotations protoc cannot resolve here: gogoproto options and imports, and the grpc-gateway
# HTTP mappings (google.api.http). Messages, services and field numbers are left as they are.
file(READ "${IN}" text)
string(REGEX REPLACE "import \"gogoproto/gogo.proto\";" "" text "${text}")
string(REGEX REPLACE "import \"google/api/annotations.proto\";" "" text "${text}")
string(REGEX REPLACE "option \\(gogoproto\\.[a-z_]+\\) = [a-z]+;" "" text "${text}")
# One level of nested braces (additional_bindings { ... }).
string(REGEX REPLACE "option \\(google\\.api\\.http\\) = {([^{}]|{[^{}]*})*};" "" text "${text}")
string(REGEX REPLACE "\\[\\(gogoproto\\.[^]]*\\]" "" text "${text}")
file(WRITE "${OUT}" "${text}")
