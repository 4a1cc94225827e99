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

v1::TaskMetrics TaskMetricsToProto(const contract::TaskMetrics& m) {
  v1::TaskMetrics out;
  out.set_examples(m.examples);
  out.set_exact_match(m.exact_match);
  out.set_normalized_match(m.normalized_match);
  out.set_token_f1(m.token_f1);
  if (m.pattern_match) out.set_pattern_match(*m.pattern_match);
  return out;
}

contract::TaskMetrics TaskMetricsFromProto(const v1::TaskMetrics& m) {
  contract::TaskMetrics out;
  out.examples = m.examples();
  out.exact_match = m.exact_match();
  out.normalized_match = m.normalized_match();
  out.token_f1 = m.token_f1();
  if (m.has_pattern_match()) out.pattern_match = m.pattern_match();
  return out;
}

}  // namespace ftune
