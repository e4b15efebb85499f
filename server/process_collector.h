// ProcessCollector: Prometheus' standard process_* series for this process, read from /proc when
// scraped, as the official clients' process collectors export them (client_golang's
// process_collector_procfs.go, client_python's ProcessCollector), so stock dashboards work:
//
//   process_cpu_seconds_total         counter  user + system CPU time (/proc/self/stat utime+stime)
//   process_resident_memory_bytes     gauge    resident set size (/proc/self/stat rss pages)
//   process_virtual_memory_bytes      gauge    virtual memory size (/proc/self/stat vsize)
//   process_start_time_seconds        gauge    start, in seconds since the Unix epoch (boot time
//                                              from /proc/stat btime + starttime ticks)
//   process_open_fds                  gauge    entries of /proc/self/fd
//   process_max_fds                   gauge    RLIMIT_NOFILE's soft limit
//
// plus kvserve_process_resident_memory_bytes (the series kvserve exported before; same value).
// A series whose source cannot be read is left out of that scrape rather than reported as 0.
//
// Thread-safety: Collect may be called from any thread (it reads /proc only).
#ifndef KVSERVE_SERVER_PROCESS_COLLECTOR_H_
#define KVSERVE_SERVER_PROCESS_COLLECTOR_H_

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "prometheus/collectable.h"
#include "prometheus/metric_family.h"

namespace kvserve::server {

// The fields of /proc/<pid>/stat the collector uses (proc(5)), in their raw units.
struct ProcStat {
  uint64_t utime_ticks = 0;      // field 14
  uint64_t stime_ticks = 0;      // field 15
  uint64_t starttime_ticks = 0;  // field 22, since boot
  uint64_t vsize_bytes = 0;      // field 23
  int64_t rss_pages = 0;         // field 24
};

// Parses the text of /proc/<pid>/stat. Field 2 (comm) is in parentheses and may itself contain
// spaces and parentheses, so fields are counted from the last ')'. nullopt: malformed.
std::optional<ProcStat> ParseProcStat(std::string_view text);

class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace kvserve::server

#endif  // KVSERVE_SERVER_PROCESS_COLLECTOR_H_
