// The core's error kinds: every failure the C++ reports carries one kind and a readable message.
#pragma once

#include <stdexcept>
#include <string>

namespace fastattr {

// bindings.cpp maps each kind to one Python class in a single place.
enum class ErrorKind {
    format,    // the file is not a valid index, or the data cannot form one
    query,     // a search was asked something it cannot answer (k, dim, NaN, rerank, threads)
    io,        // the operating system refused a read, write, rename or mmap
};

class Error : public std::runtime_error {
public:
    Error(ErrorKind kind, const std::string& message) : std::runtime_error(message), kind_(kind) {}
    ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

[[noreturn]] inline void fail(ErrorKind kind, const std::string& message) { throw Error(kind, message); }

}  // namespace fastattr
