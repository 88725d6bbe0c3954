// Errors the tool itself reports about what the user asked for (a flag, a case file).
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

namespace flashmla::cli {

// Like flashmla::Error, what() is "<argument>: <message>"; main prints it after "error: " and
// exits with status 2.
class CliError : public std::runtime_error {
 public:
  CliError(std::string argument, const std::string& message)
      : std::runtime_error(argument.empty() ? message : argument + ": " + message),
        argument_(std::move(argument)) {}
  const std::string& argument() const noexcept { return argument_; }

 private:
  std::string argument_;
};

}  // namespace flashmla::cli
