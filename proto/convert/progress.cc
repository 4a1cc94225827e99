#include "proto/convert/progress.h"

namespace ftune {

v1::PreferenceMetrics PreferenceMetricsToProto(
    const contract::PreferenceMetrics& m) {
  v1::PreferenceMetrics out;
  out.set_rewards_chosen(m.rewards_chosen);
  out.set_rewards_rejected(m.rewards_rejected);
  out.set_reward_accuracy(m.reward_accuracy);
  out.set_reward_margin(m.reward_margin);
  out.set_logps_chosen(m.logps_chosen);
  out.set_logps_rejected(m.logps_rejected);
  return out;
}

contract::PreferenceMetrics PreferenceMetricsFromProto(
    const v1::PreferenceMetrics& m) {
  return {m.rewards_chosen(), m.rewards_rejected(), m.reward_accuracy(),
          m.reward_margin(),  m.logps_chosen(),     m.logps_rejected()};
}

}  // namespace ftune
