// Owns reading and writing safetensors weight files (the format of Hugging Face's `safetensors`).
//
// Layout (https://github.com/huggingface/safetensors, "Format"):
//   8 bytes      N, the header length, unsigned 64-bit little-endian
//   N bytes      JSON object, UTF-8:
//                  {"__metadata__": {"key": "value", ...},            (optional, strings only)
//                   "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...}
//                padded with spaces so that 8 + N is a multiple of 8
//   rest         the tensors' bytes, little-endian, row-major; data_offsets count from the start of this
//                part, and the tensors tile it exactly: no gaps, no overlaps, nothing after the last one
//
// troupe reads and writes the dtypes it has: F32, BF16, I32, I64. What save_safetensors writes is
// byte-identical to the reference Python writer given the tensors in the same order (the reference sorts
// by dtype alignment, then name; troupe keeps the caller's order, which the format allows).
//
// Errors are troupe::Error: ErrorKind::kIo when the file cannot be opened, read or written, and
// ErrorKind::kInput when its contents break the format. Every message names the file and, where one is
// at fault, the tensor.
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "runtime/tensor.h"

namespace troupe {

using NamedTensors = std::vector<std::pair<std::string, Tensor>>;

// Writes `tensors` (CPU, in the given order) and `metadata` to `path`, atomically: the bytes go to a
// temporary file in the same directory, which is flushed to disk (fsync) and then renamed over `path`,
// so a reader sees either the old file or the complete new one, and a failure leaves no partial file.
// Throws kInput for an unsaveable argument (a duplicate or reserved name, an undefined or non-CPU
// tensor) and kIo when the file cannot be written.
void save_safetensors(const std::string& path, const NamedTensors& tensors,
                      const std::map<std::string, std::string>& metadata = {});

// Reads every tensor of the file, in the order of their data in the file, as CPU tensors. When
// `metadata` is given it receives the "__metadata__" entries (empty if the file has none).
// Validates the whole header before reading any data, and rejects:
//   missing or unreadable file (kIo); file shorter than 8 bytes; header length beyond the file or above
//   100 MB (the reference reader's limit); header that is not a JSON object; a tensor entry without a
//   string dtype, an integer shape or two integer data_offsets (other fields are ignored, as the
//   reference reader does); unknown or unsupported dtype; negative or fractional shape;
//   data_offsets reversed, past the end of the data, overlapping, leaving holes, or not matching
//   dtype size x shape; bytes after the last tensor; a name given twice; non-string metadata.
NamedTensors load_safetensors(const std::string& path, std::map<std::string, std::string>* metadata = nullptr);

// The "__metadata__" entries alone (empty if the file has none), after the same checks of the whole
// header as load_safetensors; the tensors' data is not read.
std::map<std::string, std::string> load_safetensors_metadata(const std::string& path);

// The safetensors name of a dtype ("F32", "BF16", "I32", "I64").
std::string safetensors_dtype_name(DType dtype);

}  // namespace troupe
