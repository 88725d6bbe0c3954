#include "flashmla/error.h"

namespace flashmla {

namespace {
std::string format_message(const std::string& argument, const std::string& message) {
  return argument.empty() ? message : argument + ": " + message;
}
}  // namespace

Error::Error(ErrorKind kind, std::string argument, const std::string& message)
    : std::runtime_error(format_message(argument, message)),
      kind_(kind),
      argument_(std::move(argument)) {}

}  // namespace flashmla
