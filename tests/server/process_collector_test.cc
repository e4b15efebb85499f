#include "server/process_collector.h"

#include <map>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace kvserve::server {
namespace {

// A /proc/<pid>/stat line (proc(5)) with fields 3..52 set to their own field number, except the
// ones the collector reads.
std::string StatLine(const std::string& comm) {
  std::string line = absl::StrCat("4242 (", comm, ")");
  for (int field = 3; field <= 52; ++field) {
    switch (field) {
      case 3:
        absl::StrAppend(&line, " S");
        break;
      case 14:
        absl::StrAppend(&line, " 250");  // utime
        break;
      case 15:
        absl::StrAppend(&line, " 50");  // stime
        break;
      case 22:
        absl::StrAppend(&line, " 123456");  // starttime
        break;
      case 23:
        absl::StrAppend(&line, " 987654321");  // vsize
        break;
      case 24:
        absl::StrAppend(&line, " 2048");  // rss
        break;
      default:
        absl::StrAppend(&line, " ", field);
    }
  }
  return line + "\n";
}

TEST(ParseProcStatTest, ReadsTheFieldsTheCollectorExports) {
  const std::optional<ProcStat> stat = ParseProcStat(StatLine("kvserve"));
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->utime_ticks, 250u);
  EXPECT_EQ(stat->stime_ticks, 50u);
  EXPECT_EQ(stat->starttime_ticks, 123456u);
  EXPECT_EQ(stat->vsize_bytes, 987654321u);
  EXPECT_EQ(stat->rss_pages, 2048);
}

TEST(ParseProcStatTest, CountsFieldsFromTheLastParenthesisOfTheCommand) {
  // A thread or program may name itself anything, spaces and parentheses included.
  const std::optional<ProcStat> stat = ParseProcStat(StatLine("a) 1 2 (b c"));
  ASSERT_TRUE(stat.has_value());
  EXPECT_EQ(stat->utime_ticks, 250u);
  EXPECT_EQ(stat->rss_pages, 2048);
}

TEST(ParseProcStatTest, RejectsMalformedText) {
  EXPECT_FALSE(ParseProcStat("").has_value());
  EXPECT_FALSE(ParseProcStat("4242 kvserve S 1 2 3").has_value());      // no parenthesis
  EXPECT_FALSE(ParseProcStat("4242 (kvserve) S 1 2 3\n").has_value());  // too few fields
  std::string bad = StatLine("kvserve");
  bad.replace(bad.find(" 250 "), 5, " 2x0 ");
  EXPECT_FALSE(ParseProcStat(bad).has_value());
}

TEST(ProcessCollectorTest, ReadsThisProcess) {
  std::map<std::string, double> values;
  for (const prometheus::MetricFamily& family : ProcessCollector().Collect()) {
    ASSERT_EQ(family.metric.size(), 1u) << family.name;
    values[family.name] = family.type == prometheus::MetricType::Counter
                              ? family.metric[0].counter.value
                              : family.metric[0].gauge.value;
  }
  for (const char* name :
       {"process_cpu_seconds_total", "process_resident_memory_bytes",
        "process_virtual_memory_bytes", "process_start_time_seconds", "process_open_fds",
        "process_max_fds", "kvserve_process_resident_memory_bytes"}) {
    EXPECT_TRUE(values.contains(name)) << name;
  }
  // stdin, stdout and stderr at least.
  EXPECT_GE(values["process_open_fds"], 3);
}

}  // namespace
}  // namespace kvserve::server
