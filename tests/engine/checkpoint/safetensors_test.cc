#include "engine/checkpoint/safetensors.h"

#include <bit>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/safetensors_writer.h"

namespace kvserve::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

constexpr char kFileName[] = "bad.safetensors";

// Raw element bytes; the format is little-endian, and so is every host the reader accepts.
template <typename T>
std::string Bytes(std::initializer_list<T> values) {
  std::string out(values.size() * sizeof(T), '\0');
  std::memcpy(out.data(), std::data(values), out.size());
  return out;
}

// A file with a hand-written header, for the malformed cases the writer refuses to produce.
std::string RawFile(std::string_view header, std::string_view data) {
  std::string out;
  const uint64_t header_size = header.size();
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>((header_size >> (8 * i)) & 0xff));
  out.append(header);
  out.append(data);
  return out;
}

absl::Status ParseStatus(std::string_view header, std::string_view data = "") {
  return SafetensorsFile::FromBytes(RawFile(header, data), kFileName).status();
}

// gmock's string matchers need std::string_view, which this Abseil build's string_view is not.
std::string Message(const absl::Status& status) { return std::string(status.message()); }

void WriteWholeFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string TensorBytes(const TensorView& tensor) {
  return std::string(reinterpret_cast<const char*>(tensor.data), tensor.num_bytes);
}

// Two tensors deliberately written out of name order, so "sorted by offset" is observable.
std::vector<TensorToWrite> SampleTensors() {
  return {
      {.name = "w",
       .dtype = DType::kF32,
       .shape = {2, 3},
       .bytes = Bytes<float>({1, 2, 3, 4, 5, 6})},
      {.name = "b", .dtype = DType::kI32, .shape = {4}, .bytes = Bytes<int32_t>({-1, 0, 7, 9})},
  };
}

void ExpectSampleTensors(const SafetensorsFile& file) {
  ASSERT_EQ(file.tensors().size(), 2u);
  const TensorView& w = file.tensors()[0];
  EXPECT_EQ(w.name, "w");
  EXPECT_EQ(w.dtype, DType::kF32);
  EXPECT_THAT(w.shape, ElementsAre(2, 3));
  EXPECT_EQ(w.NumElements(), 6);
  EXPECT_EQ(w.num_bytes, 24u);
  EXPECT_EQ(TensorBytes(w), Bytes<float>({1, 2, 3, 4, 5, 6}));
  const TensorView& b = file.tensors()[1];
  EXPECT_EQ(b.name, "b");
  EXPECT_EQ(b.dtype, DType::kI32);
  EXPECT_THAT(b.shape, ElementsAre(4));
  EXPECT_EQ(b.num_bytes, 16u);
  EXPECT_EQ(TensorBytes(b), Bytes<int32_t>({-1, 0, 7, 9}));
  // The data buffer is contiguous: b follows w.
  EXPECT_EQ(b.data, w.data + 24);

  EXPECT_EQ(file.Find("w"), &file.tensors()[0]);
  EXPECT_EQ(file.Find("b"), &file.tensors()[1]);
  EXPECT_EQ(file.Find("missing"), nullptr);
  EXPECT_EQ(file.Find("__metadata__"), nullptr);
  EXPECT_THAT(file.metadata(), IsEmpty());
}

TEST(SafetensorsTest, DTypeNamesAndSizesRoundTrip) {
  const std::vector<std::pair<DType, size_t>> expected = {
      {DType::kF32, 4},  {DType::kF16, 2},    {DType::kBF16, 2},   {DType::kF64, 8},
      {DType::kI8, 1},   {DType::kI16, 2},    {DType::kI32, 4},    {DType::kI64, 8},
      {DType::kU8, 1},   {DType::kU16, 2},    {DType::kU32, 4},    {DType::kU64, 8},
      {DType::kBool, 1}, {DType::kF8E4M3, 1}, {DType::kF8E5M2, 1},
  };
  for (const auto& [dtype, size] : expected) {
    EXPECT_EQ(DTypeSize(dtype), size) << DTypeName(dtype);
    EXPECT_EQ(DTypeFromName(DTypeName(dtype)), dtype) << DTypeName(dtype);
  }
  EXPECT_EQ(DTypeName(DType::kBF16), "BF16");
  EXPECT_EQ(DTypeName(DType::kBool), "BOOL");
  EXPECT_EQ(DTypeName(DType::kF8E4M3), "F8_E4M3");
  EXPECT_EQ(DTypeFromName("f32"), std::nullopt);
  EXPECT_EQ(DTypeFromName("F128"), std::nullopt);
}

TEST(SafetensorsTest, RoundTripsThroughSerializeAndFromBytes) {
  const std::string bytes = SerializeSafetensors(SampleTensors());
  auto file = SafetensorsFile::FromBytes(bytes, "mem");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->name(), "mem");
  ExpectSampleTensors(**file);
}

TEST(SafetensorsTest, SerializePadsHeaderWithSpacesToEightBytes) {
  const std::string bytes = SerializeSafetensors(SampleTensors());
  uint64_t header_size = 0;
  std::memcpy(&header_size, bytes.data(), 8);
  EXPECT_EQ(header_size % 8, 0u);
  ASSERT_EQ(bytes.size(), 8 + header_size + 24 + 16);
  const std::string header = bytes.substr(8, header_size);
  EXPECT_THAT(header, StartsWith("{"));
  const size_t last = header.find_last_not_of(' ');
  ASSERT_NE(last, std::string::npos);
  EXPECT_EQ(header[last], '}');
  EXPECT_LT(header.size() - (last + 1), 8u);  // No more padding than alignment needs.
  EXPECT_EQ(bytes.substr(8 + header_size),
            Bytes<float>({1, 2, 3, 4, 5, 6}) + Bytes<int32_t>({-1, 0, 7, 9}));
}

TEST(SafetensorsTest, OpensFileOnDiskThroughMmap) {
  const std::string path = ::testing::TempDir() + "/safetensors_test_open.safetensors";
  WriteWholeFile(path, SerializeSafetensors(SampleTensors()));
  auto file = SafetensorsFile::Open(path);
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->name(), path);
  ExpectSampleTensors(**file);
  std::remove(path.c_str());
}

TEST(SafetensorsTest, OpenReportsMalformedFileOnDiskWithItsPath) {
  const std::string path = ::testing::TempDir() + "/safetensors_test_truncated.safetensors";
  std::string bytes = SerializeSafetensors(SampleTensors());
  bytes.resize(bytes.size() - 4);  // Drop the last element of "b".
  WriteWholeFile(path, bytes);
  const absl::Status status = SafetensorsFile::Open(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), StartsWith(path + ": tensor 'b': "));
  EXPECT_THAT(Message(status), HasSubstr("extend past the end of the 36-byte data buffer"));
  std::remove(path.c_str());
}

TEST(SafetensorsTest, OpenReportsEmptyFileAsTooShort) {
  const std::string path = ::testing::TempDir() + "/safetensors_test_empty.safetensors";
  WriteWholeFile(path, "");
  const absl::Status status = SafetensorsFile::Open(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("file is 0 bytes"));
  std::remove(path.c_str());
}

TEST(SafetensorsTest, OpenReportsMissingFileAsNotFound) {
  const std::string path = ::testing::TempDir() + "/safetensors_test_no_such_file.safetensors";
  const absl::Status status = SafetensorsFile::Open(path).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(Message(status), HasSubstr(path));
}

TEST(SafetensorsTest, OpenRejectsDirectory) {
  const absl::Status status = SafetensorsFile::Open(::testing::TempDir()).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("not a regular file"));
}

TEST(SafetensorsTest, ConvertsF16ExactlyIncludingSubnormalsInfinityAndNan) {
  // 1.0, -2.5, 65504 (largest finite), 2^-24 (smallest subnormal), 1023 * 2^-24 (largest
  // subnormal), -0.0, +inf, -inf, quiet NaN.
  const std::string bytes =
      SerializeSafetensors({{.name = "h",
                             .dtype = DType::kF16,
                             .shape = {9},
                             .bytes = Bytes<uint16_t>({0x3C00, 0xC100, 0x7BFF, 0x0001, 0x03FF,
                                                       0x8000, 0x7C00, 0xFC00, 0x7E00})}});
  auto file = SafetensorsFile::FromBytes(bytes, "f16");
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorView* h = (*file)->Find("h");
  ASSERT_NE(h, nullptr);
  std::vector<float> out(9);
  ASSERT_TRUE(ConvertToFloat(*h, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.5f);
  EXPECT_EQ(out[2], 65504.0f);
  EXPECT_EQ(out[3], 0x1p-24f);
  EXPECT_EQ(out[4], 1023 * 0x1p-24f);
  EXPECT_EQ(std::bit_cast<uint32_t>(out[5]), 0x80000000u);  // -0.0 keeps its sign.
  EXPECT_EQ(out[6], std::numeric_limits<float>::infinity());
  EXPECT_EQ(out[7], -std::numeric_limits<float>::infinity());
  EXPECT_EQ(std::bit_cast<uint32_t>(out[8]), 0x7FC00000u);  // Canonical quiet NaN.
}

TEST(SafetensorsTest, ConvertsBf16ByWideningToF32) {
  // 1.0, -2.5, 65280 (65504 is not a BF16 value; 0x477F is the nearest below), 2^-24, 2^-133
  // (smallest BF16 subnormal), +inf, quiet NaN.
  const std::string bytes = SerializeSafetensors(
      {{.name = "b",
        .dtype = DType::kBF16,
        .shape = {7},
        .bytes = Bytes<uint16_t>({0x3F80, 0xC020, 0x477F, 0x3380, 0x0001, 0x7F80, 0x7FC0})}});
  auto file = SafetensorsFile::FromBytes(bytes, "bf16");
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorView* b = (*file)->Find("b");
  ASSERT_NE(b, nullptr);
  std::vector<float> out(7);
  ASSERT_TRUE(ConvertToFloat(*b, absl::MakeSpan(out)).ok());
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], -2.5f);
  EXPECT_EQ(out[2], 65280.0f);
  EXPECT_EQ(out[3], 0x1p-24f);
  EXPECT_EQ(out[4], 0x1p-133f);
  EXPECT_EQ(out[5], std::numeric_limits<float>::infinity());
  EXPECT_EQ(std::bit_cast<uint32_t>(out[6]), 0x7FC00000u);
}

TEST(SafetensorsTest, ConvertsF32ScalarWithEmptyShape) {
  const std::string bytes = SerializeSafetensors(
      {{.name = "s", .dtype = DType::kF32, .shape = {}, .bytes = Bytes<float>({-3.25f})}});
  auto file = SafetensorsFile::FromBytes(bytes, "scalar");
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorView* s = (*file)->Find("s");
  ASSERT_NE(s, nullptr);
  EXPECT_THAT(s->shape, IsEmpty());
  EXPECT_EQ(s->NumElements(), 1);
  EXPECT_EQ(s->num_bytes, 4u);
  float out = 0;
  ASSERT_TRUE(ConvertToFloat(*s, absl::MakeSpan(&out, 1)).ok());
  EXPECT_EQ(out, -3.25f);
}

TEST(SafetensorsTest, ConvertRejectsNonFloatDTypeNamingTensorAndDType) {
  const std::string bytes = SerializeSafetensors(SampleTensors());
  auto file = SafetensorsFile::FromBytes(bytes, "mem");
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorView* b = (*file)->Find("b");
  ASSERT_NE(b, nullptr);
  std::vector<float> out(4);
  const absl::Status status = ConvertToFloat(*b, absl::MakeSpan(out));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("tensor 'b' has dtype I32"));
}

TEST(SafetensorsTest, ConvertRejectsOutputOfWrongSize) {
  const std::string bytes = SerializeSafetensors(SampleTensors());
  auto file = SafetensorsFile::FromBytes(bytes, "mem");
  ASSERT_TRUE(file.ok()) << file.status();
  const TensorView* w = (*file)->Find("w");
  ASSERT_NE(w, nullptr);
  std::vector<float> out(5);
  const absl::Status status = ConvertToFloat(*w, absl::MakeSpan(out));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("tensor 'w' has 6 elements but the output holds 5"));
}

TEST(SafetensorsTest, RoundTripsMetadata) {
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "héllo"}};
  const std::string bytes = SerializeSafetensors(SampleTensors(), metadata);
  auto file = SafetensorsFile::FromBytes(bytes, "meta");
  ASSERT_TRUE(file.ok()) << file.status();
  EXPECT_EQ((*file)->metadata(), metadata);
  EXPECT_EQ((*file)->tensors().size(), 2u);
}

TEST(SafetensorsTest, AcceptsZeroElementTensorsAndEmptyHeader) {
  auto empty = SafetensorsFile::FromBytes(RawFile("{}", ""), "empty");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_THAT((*empty)->tensors(), IsEmpty());

  // A zero-byte tensor shares its offset with the next tensor; ties sort by (begin, end, name).
  auto file = SafetensorsFile::FromBytes(
      RawFile(R"({"z": {"dtype": "F16", "shape": [0, 4], "data_offsets": [2, 2]},)"
              R"( "a": {"dtype": "U8", "shape": [2], "data_offsets": [0, 2]},)"
              R"( "c": {"dtype": "U8", "shape": [1], "data_offsets": [2, 3]}}   )",
              "xyz"),
      "zero");
  ASSERT_TRUE(file.ok()) << file.status();
  ASSERT_EQ((*file)->tensors().size(), 3u);
  EXPECT_EQ((*file)->tensors()[0].name, "a");
  EXPECT_EQ((*file)->tensors()[1].name, "z");
  EXPECT_EQ((*file)->tensors()[1].NumElements(), 0);
  EXPECT_EQ((*file)->tensors()[1].num_bytes, 0u);
  EXPECT_EQ((*file)->tensors()[2].name, "c");
  EXPECT_EQ(TensorBytes((*file)->tensors()[2]), "z");
}

TEST(SafetensorsTest, SerializeDiesOnBytesThatDoNotMatchShape) {
  EXPECT_DEATH(SerializeSafetensors(
                   {{.name = "w", .dtype = DType::kF32, .shape = {2}, .bytes = Bytes<float>({1})}}),
               "tensor 'w': 4 bytes but shape \\[2\\] of F32 needs 8");
}

// ---- Malformed files. Every case is InvalidArgument with a message that says what is wrong.

TEST(SafetensorsTest, RejectsFileShorterThanLengthPrefix) {
  const absl::Status status = SafetensorsFile::FromBytes("abc", kFileName).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "bad.safetensors: file is 3 bytes, shorter than the 8-byte header length");
}

TEST(SafetensorsTest, RejectsHeaderLengthBeyondEndOfFile) {
  std::string bytes = RawFile("{}", "");
  bytes[0] = 100;  // Claims a 100-byte header; only 2 bytes follow.
  const absl::Status status = SafetensorsFile::FromBytes(bytes, kFileName).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("header length 100 exceeds the 2 bytes that follow"));
}

TEST(SafetensorsTest, RejectsHeaderLengthOverLimit) {
  std::string bytes = RawFile("{}", "");
  const uint64_t header_size = SafetensorsFile::kMaxHeaderBytes + 1;
  std::memcpy(bytes.data(), &header_size, 8);
  const absl::Status status = SafetensorsFile::FromBytes(bytes, kFileName).status();
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("header length 100000001 exceeds the limit of 100000000 bytes"));
}

TEST(SafetensorsTest, RejectsHeaderThatIsNotJson) {
  const absl::Status status = ParseStatus(R"({"w": {"dtype": )");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("bad.safetensors: header is not valid JSON"));
}

TEST(SafetensorsTest, RejectsHeaderWithInvalidUtf8) {
  const absl::Status status = ParseStatus("{\"\xff\": {}}");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("header is not valid JSON"));
  EXPECT_THAT(Message(status), HasSubstr("UTF-8"));
}

TEST(SafetensorsTest, RejectsHeaderThatIsNotAnObject) {
  const absl::Status status = ParseStatus("[1, 2]  ");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("header is not a JSON object but array [1,2]"));
}

TEST(SafetensorsTest, RejectsHeaderWithLeadingWhitespace) {
  const absl::Status status = ParseStatus(" {}");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("header does not start with '{'"));
}

TEST(SafetensorsTest, RejectsDeeplyNestedHeader) {
  const absl::Status status =
      ParseStatus(R"({"__metadata__": )" + std::string(100, '[') + std::string(100, ']') + "}");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("header nests deeper than 16 levels"));
}

TEST(SafetensorsTest, RejectsDuplicateTensorNames) {
  const absl::Status status =
      ParseStatus(R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},)"
                  R"( "w": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}})",
                  "ab");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("duplicate tensor name 'w'"));
}

TEST(SafetensorsTest, RejectsDuplicateKeyInsideEntry) {
  const absl::Status status = ParseStatus(
      R"({"w": {"dtype": "U8", "dtype": "I8", "shape": [1], "data_offsets": [0, 1]}})", "a");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("duplicate key 'dtype'"));
}

TEST(SafetensorsTest, RejectsEntryThatIsNotAnObject) {
  const absl::Status status = ParseStatus(R"({"w": [0, 1]})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("bad.safetensors: tensor 'w': entry must be a JSON object, got [0,1]"));
}

TEST(SafetensorsTest, RejectsEntryMissingEachRequiredField) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {R"({"w": {"shape": [1], "data_offsets": [0, 1]}})", "tensor 'w': missing 'dtype'"},
      {R"({"w": {"dtype": "U8", "data_offsets": [0, 1]}})", "tensor 'w': missing 'shape'"},
      {R"({"w": {"dtype": "U8", "shape": [1]}})", "tensor 'w': missing 'data_offsets'"},
  };
  for (const auto& [header, expected] : cases) {
    const absl::Status status = ParseStatus(header, "a");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << header;
    EXPECT_THAT(Message(status), HasSubstr(expected)) << header;
  }
}

TEST(SafetensorsTest, RejectsUnknownKeyInEntry) {
  const absl::Status status = ParseStatus(
      R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1], "stride": [1]}})", "a");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("tensor 'w': unknown key 'stride'"));
}

TEST(SafetensorsTest, RejectsDTypeThatIsNotAString) {
  const absl::Status status =
      ParseStatus(R"({"w": {"dtype": 4, "shape": [1], "data_offsets": [0, 4]}})", "abcd");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("tensor 'w': 'dtype' must be a string, got 4"));
}

TEST(SafetensorsTest, RejectsUnknownDType) {
  const absl::Status status = ParseStatus(
      R"({"w": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}})", std::string(16, 'x'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("tensor 'w': unknown dtype 'F128'"));
}

TEST(SafetensorsTest, RejectsShapeThatIsNotAnArray) {
  const absl::Status status =
      ParseStatus(R"({"w": {"dtype": "U8", "shape": 1, "data_offsets": [0, 1]}})", "a");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("tensor 'w': 'shape' must be an array, got 1"));
}

TEST(SafetensorsTest, RejectsNegativeDimension) {
  const absl::Status status =
      ParseStatus(R"({"w": {"dtype": "U8", "shape": [3, -2], "data_offsets": [0, 6]}})", "abcdef");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("tensor 'w': shape [3,-2] has negative dimension -2"));
}

TEST(SafetensorsTest, RejectsNonIntegerDimension) {
  const absl::Status status =
      ParseStatus(R"({"w": {"dtype": "U8", "shape": [2.0], "data_offsets": [0, 2]}})", "ab");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("tensor 'w': shape [2.0] has non-integer dimension 2.0"));
}

TEST(SafetensorsTest, RejectsElementCountOverflow) {
  // 2^32 * 2^32 = 2^64 elements.
  const absl::Status status = ParseStatus(
      R"({"w": {"dtype": "U8", "shape": [4294967296, 4294967296], "data_offsets": [0, 1]}})", "a");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("has more elements than int64 can count"));
}

TEST(SafetensorsTest, RejectsByteCountOverflow) {
  // 2^62 F32 elements fit in int64 but need 2^64 bytes.
  const absl::Status status = ParseStatus(
      R"({"w": {"dtype": "F32", "shape": [4611686018427387904], "data_offsets": [0, 4]}})", "abcd");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("shape [4611686018427387904] of F32 needs more bytes than uint64 can"));
}

TEST(SafetensorsTest, RejectsMalformedDataOffsets) {
  for (const std::string offsets : {"[0]", "[0, 1, 2]", "[-1, 0]", "[0, 1.5]", "\"0-1\""}) {
    const absl::Status status = ParseStatus(
        R"({"w": {"dtype": "U8", "shape": [1], "data_offsets": )" + offsets + "}}", "a");
    EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument) << offsets;
    EXPECT_THAT(Message(status),
                HasSubstr("tensor 'w': data_offsets must be 2 non-negative integers"))
        << offsets;
  }
}

TEST(SafetensorsTest, RejectsDataOffsetsWithBeginAfterEnd) {
  const absl::Status status =
      ParseStatus(R"({"w": {"dtype": "U8", "shape": [0], "data_offsets": [4, 0]}})", "abcd");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status), HasSubstr("tensor 'w': data_offsets [4, 0] have begin > end"));
}

TEST(SafetensorsTest, RejectsDataOffsetsThatDisagreeWithShape) {
  const absl::Status status =
      ParseStatus(R"({"x": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 12]}})",
                  std::string(12, '\0'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(status.message(),
            "bad.safetensors: tensor 'x': data_offsets [0, 12] hold 12 bytes but shape [2, 3] "
            "of F32 needs 24");
}

TEST(SafetensorsTest, RejectsDataOffsetsBeyondDataBuffer) {
  const absl::Status status =
      ParseStatus(R"({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}})", "abcd");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("tensor 'w': data_offsets [0, 8] extend past the end of the 4-byte data "
                        "buffer"));
}

TEST(SafetensorsTest, RejectsOverlappingTensors) {
  const absl::Status status =
      ParseStatus(R"({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},)"
                  R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}})",
                  std::string(12, '\0'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("tensor 'b' data_offsets [4, 12] overlap tensor 'a' data_offsets [0, 8]"));
}

TEST(SafetensorsTest, RejectsHoleBetweenTensors) {
  const absl::Status status =
      ParseStatus(R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},)"
                  R"( "b": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]}})",
                  std::string(12, '\0'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("data buffer bytes [4, 8) belong to no tensor (hole before tensor 'b')"));
}

TEST(SafetensorsTest, RejectsDataBufferNotFullyCovered) {
  const absl::Status status = ParseStatus(
      R"({"a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})", std::string(8, '\0'));
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("data buffer is 8 bytes but tensors cover only the first 4"));
}

TEST(SafetensorsTest, RejectsMetadataThatIsNotAnObject) {
  const absl::Status status = ParseStatus(R"({"__metadata__": ["pt"]})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("'__metadata__' must be an object of strings, got [\"pt\"]"));
}

TEST(SafetensorsTest, RejectsMetadataValueThatIsNotAString) {
  const absl::Status status = ParseStatus(R"({"__metadata__": {"format": "pt", "epoch": 3}})");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(Message(status),
              HasSubstr("'__metadata__' value for 'epoch' must be a string, got 3"));
}

}  // namespace
}  // namespace kvserve::engine
