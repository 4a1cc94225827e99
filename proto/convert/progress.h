// The trainer's progress statistics in the API's messages.
#ifndef FTUNE_PROTO_CONVERT_PROGRESS_H_
#define FTUNE_PROTO_CONVERT_PROGRESS_H_

#include "common/contract/progress.h"
#include "ftune/v1/job.pb.h"

namespace ftune {

v1::PreferenceMetrics PreferenceMetricsToProto(
    const contract::PreferenceMetrics& m);
contract::PreferenceMetrics PreferenceMetricsFromProto(
    const v1::PreferenceMetrics& m);

// Task metrics of an evaluation (MetricPoint.eval_task).
v1::TaskMetrics TaskMetricsToProto(const contract::TaskMetrics& m);
contract::TaskMetrics TaskMetricsFromProto(const v1::TaskMetrics& m);

}  // namespace ftune

#endif  // FTUNE_PROTO_CONVERT_PROGRESS_H_
