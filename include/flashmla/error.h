// One exception type for everything the library rejects or cannot do.
#pragma once

#include <stdexcept>
#include <string>

namespace flashmla {

enum class ErrorKind {
  kValue,         // an argument has the wrong shape, stride or value (Python: ValueError)
  kType,          // an argument has the wrong dtype or device (Python: TypeError)
  kNotSupported,  // a valid request this build or backend does not implement (NotImplementedError)
  kRuntime,       // the backend failed (CUDA error, out of memory) (RuntimeError)
};

class Error : public std::runtime_error {
 public:
  // `argument` names the offending argument ("" when none applies).
  Error(ErrorKind kind, std::string argument, const std::string& message);

  ErrorKind kind() const noexcept { return kind_; }
  const std::string& argument() const noexcept { return argument_; }

 private:
  ErrorKind kind_;
  std::string argument_;
};

}  // namespace flashmla
