// The `uppercase` transform: upper-cases one string field of JSON object values.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cctype>
#include <sluice/sdk.hpp>
#include <string>

namespace {

class Uppercase final : public sluice::Transform {
 public:
  // Declares the config; the host checks a pipeline's config against it before create.
  static sluice::ConfigSchema schema() {
    sluice::ConfigSchema s;
    s.string("field").required().doc("The top-level string field to upper-case.");
    return s;
  }
  static std::string description() { return "Upper-cases one string field of JSON objects."; }

  Uppercase(const sluice::Config& config, sluice::Host& /*host*/)
      : field_(config.get_string("field")) {
    if (field_.empty()) throw sluice::ConfigError("field", "field must not be empty");
  }

  // May run on several threads at once: it keeps no state between calls.
  void process(const sluice::Batch& in, sluice::Output& out) override {
    rapidjson::Document doc;
    rapidjson::StringBuffer buffer;
    for (size_t i = 0; i < in.size(); ++i) {
      const sluice::RecordView record = in[i];
      if (!record.has_value()) {  // tombstones pass unchanged
        out.forward(i, record);
        continue;
      }
      // Not doc.Parse: RapidJSON recurses once per level, and a value nested 100,000 deep would
      // run the thread out of stack. parse_json_within stops at kMaxJsonDepth levels.
      const sluice::JsonParse parsed = sluice::parse_json_within(doc, record.value());
      if (parsed.too_deep) {
        out.reject(i, "uppercase: value nested deeper than " +
                          std::to_string(sluice::kMaxJsonDepth) + " levels");
        continue;
      }
      if (!parsed.ok() || !doc.IsObject()) {
        // One bad record is rejected; the rest of the batch goes on.
        out.reject(i, "uppercase: value is not a JSON object");
        continue;
      }
      auto it = doc.FindMember(field_.c_str());
      if (it == doc.MemberEnd() || !it->value.IsString()) {
        out.forward(i, record);
        continue;
      }
      std::string text(it->value.GetString(), it->value.GetStringLength());
      for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      it->value.SetString(text.data(), static_cast<rapidjson::SizeType>(text.size()),
                          doc.GetAllocator());

      buffer.Clear();
      rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
      doc.Accept(writer);
      sluice::OutRecord changed = sluice::OutRecord::from(record);
      changed.value = std::string_view(buffer.GetString(), buffer.GetSize());
      out.emit(i, changed);  // the input index keeps acks and offsets exact
    }
  }

 private:
  std::string field_;
};

}  // namespace

SLUICE_MODULE("my_plugin", "0.1.0", SLUICE_TRANSFORM(Uppercase, "uppercase"))
