// Chat templates and the rendering of dataset examples to token ids with a
// loss mask.
//
// Templates (selected by name; we do not run Jinja):
//   chatml  <|im_start|>{role}\n{content}<|im_end|>\n ...           (Qwen,
//   SmolLM) llama3
//   <|begin_of_text|><|start_header_id|>{role}<|end_header_id|>\n\n
//           {content|trim}<|eot_id|> ...
//   llama2  <s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant}
//   </s>
//           <s>[INST] {user} [/INST] ... (user/assistant must alternate)
//   alpaca  [bos]{system or the Alpaca preamble}\n\n###
//   Instruction:\n{user}\n\n
//           ### Response:\n{assistant}[eos] (more turns repeat the two blocks)
//   phi3    [bos]<|{role}|>\n{content}<|end|>\n ... then eos, untrained
//           (Phi-3, Phi-3.5; <|system|>, <|user|>, <|assistant|>)
//   gemma   <bos><start_of_turn>{user|model}\n{content|trim}<end_of_turn>\n
//           ... (Gemma 2: no system role; user/assistant must alternate,
//           starting with user)
//   auto    the template in tokenizer_config.json when it recognisably is one
//           of the above (markers "<|im_start|>", "<|start_header_id|>",
//           "<start_of_turn>", "<|assistant|>" with "<|end|>", "[INST]",
//           "### Instruction"); otherwise INVALID_ARGUMENT.
//
// What is trained (loss mask = 1):
//   messages: the content of trainable assistant messages and the token(s)
//     that end the turn (<|im_end|>, <|eot_id|>, </s>, eos for alpaca,
//     <|end|> for phi3, <end_of_turn> for gemma);
//   prompt/completion: [bos if add_bos_token] prompt (0) completion (1) eos (1)
//     (no template: the two strings are concatenated as they are);
//   text: [bos] text eos, all 1 (bos, being first, is never a target).
//
// Special tokens only ever come from the template: every text that comes
// from the example (content, prompt, text) is encoded with
// EncodeOptions::parse_special = false, so a user writing "<|im_end|>" gets
// the characters, not the control token. Template text and content are
// encoded as separate pieces (content continues the template text, without
// a SentencePiece dummy prefix), so the mask is exact at token level.
//
// Thread-safety: pure functions over const inputs.
#ifndef FTUNE_WORKER_TRAIN_TEXT_CHAT_TEMPLATE_H_
#define FTUNE_WORKER_TRAIN_TEXT_CHAT_TEMPLATE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "common/dataset.h"
#include "worker/train/text/tokenizer.h"

namespace ftune::train {

enum class ChatTemplate { kChatML, kLlama3, kLlama2, kAlpaca, kPhi3, kGemma };
absl::string_view ChatTemplateName(ChatTemplate t);

// `name`: "chatml", "llama3", "llama2", "alpaca", "phi3", "gemma" or
// "auto" (see top).
// INVALID_ARGUMENT for an unknown name or an unrecognised/missing template.
absl::StatusOr<ChatTemplate> ResolveChatTemplate(absl::string_view name,
                                                 const TokenizerConfig& config);

// An example as tokens. ids and loss_mask have the same length;
// loss_mask[i] == 1 when token i is a training target.
struct TokenizedExample {
  std::vector<int32_t> ids;
  std::vector<uint8_t> loss_mask;
  int64_t line_number = 0;
};

// Renders and tokenizes one example. `chat_template` is used for messages
// only. FAILED_PRECONDITION when the tokenizer lacks a token the template
// needs (e.g. "<|im_start|>" for chatml, or an eos token); INVALID_ARGUMENT
// (naming the line and message) when the messages do not fit the template
// (llama2 and gemma need alternating user/assistant turns; gemma has no
// system role).
absl::StatusOr<TokenizedExample> TokenizeExample(const Example& example,
                                                 ChatTemplate chat_template,
                                                 const Tokenizer& tokenizer);

// The prompt of a generation (generate.h): the tokens training puts before
// the completion, so the model continues where it learned to answer.
//   messages: the conversation rendered as TokenizeExample renders it
//     (the last message must not be the assistant's), then the template's
//     opening of an assistant turn: chatml "<|im_start|>assistant\n",
//     llama3 "<|start_header_id|>assistant<|end_header_id|>\n\n", llama2
//     nothing (the prompt ends with "[/INST]"), alpaca "### Response:\n",
//     phi3 "<|assistant|>\n" (and no final eos), gemma
//     "<start_of_turn>model\n";
//   prompt/completion: [bos if add_bos_token] prompt (the completion is not
//     rendered);
//   text: [bos if add_bos_token] text.
// Errors as TokenizeExample's; INVALID_ARGUMENT for a conversation that
// ends with an assistant message.
absl::StatusOr<std::vector<int32_t>> TokenizePrompt(const Example& example,
                                                    ChatTemplate chat_template,
                                                    const Tokenizer& tokenizer);

// The tokens that end a completion of `format` under `chat_template`: the
// tokenizer's eos, and for messages the token that ends an assistant turn
// (<|im_end|>, <|eot_id|>, <|end|>, <end_of_turn>) where the tokenizer has
// it. Sorted, unique.
std::vector<int32_t> CompletionEndTokens(DatasetFormat format,
                                         ChatTemplate chat_template,
                                         const Tokenizer& tokenizer);

}  // namespace ftune::train

#endif  // FTUNE_WORKER_TRAIN_TEXT_CHAT_TEMPLATE_H_
