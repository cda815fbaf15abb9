// The reference side of sluice's differential test of Kafka Connect transforms: applies the real
// connect-transforms classes to a corpus and prints what they made of each record.
//
// Input (stdin), one JSON object a line:
//   {"name", "smt": class, "config": {..}, "schemas": bool, "predicate": {"class", "config"},
//    "negate": bool, "source": bool (SourceRecords, as a connector's transforms see them), "records": [{"topic", "partition", "key", "value", "headers": [[k, v]..],
//    "timestamp"}]}
// key and value are JSON (with the {schema, payload} envelope when "schemas" is true), null for
// a null key or a tombstone. Output (stdout), one line a case:
//   {"name", "outputs": [record | null (dropped) | {"error": "Class: message"}]}
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ArrayNode;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.HashMap;
import java.util.Iterator;
import java.util.Map;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.data.Values;
import org.apache.kafka.connect.header.ConnectHeaders;
import org.apache.kafka.connect.header.Header;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.sink.SinkRecord;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.transforms.Transformation;
import org.apache.kafka.connect.transforms.predicates.Predicate;

public class Harness {
  static final ObjectMapper JSON = new ObjectMapper();

  public static void main(String[] args) throws Exception {
    BufferedReader in =
        new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8));
    StringBuilder out = new StringBuilder();
    for (String line; (line = in.readLine()) != null; ) {
      if (line.isBlank()) continue;
      out.append(JSON.writeValueAsString(runCase(JSON.readTree(line)))).append('\n');
    }
    System.out.print(out);
  }

  static ObjectNode runCase(JsonNode c) throws Exception {
    JsonConverter keys = converter(c.path("schemas").asBoolean(false), true);
    JsonConverter values = converter(c.path("schemas").asBoolean(false), false);
    ObjectNode result = JSON.createObjectNode();
    result.put("name", c.get("name").asText());
    ArrayNode outputs = result.putArray("outputs");
    for (JsonNode r : c.get("records")) {
      try {
        // A fresh instance a record, as the corpus's records are independent of each other.
        Transformation t = newInstance(c.get("smt").asText(), c.get("config"));
        Predicate p = predicate(c);
        ConnectRecord in = toRecord(r, keys, values, c.path("source").asBoolean(false));
        boolean applies = p == null || (p.test(in) != c.path("negate").asBoolean(false));
        ConnectRecord o = applies ? (ConnectRecord) t.apply(in) : in;
        outputs.add(o == null ? null : fromRecord(o, keys, values));
      } catch (Exception e) {
        outputs.addObject().put("error", e.getClass().getSimpleName() + ": " + e.getMessage());
      }
    }
    return result;
  }

  static JsonConverter converter(boolean schemas, boolean isKey) {
    JsonConverter c = new JsonConverter();
    Map<String, Object> cfg = new HashMap<>();
    cfg.put("schemas.enable", schemas);
    cfg.put("replace.null.with.default", false);
    c.configure(cfg, isKey);
    return c;
  }

  @SuppressWarnings("unchecked")
  static <T> T newInstance(String cls, JsonNode config) throws Exception {
    Object o = Class.forName(cls).getDeclaredConstructor().newInstance();
    Map<String, Object> cfg = new HashMap<>();
    if (config != null)
      for (Iterator<Map.Entry<String, JsonNode>> it = config.fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        cfg.put(e.getKey(), e.getValue().isTextual() ? e.getValue().asText() : e.getValue().toString());
      }
    if (o instanceof Transformation) ((Transformation<?>) o).configure(cfg);
    else ((Predicate<?>) o).configure(cfg);
    return (T) o;
  }

  static Predicate predicate(JsonNode c) throws Exception {
    JsonNode p = c.get("predicate");
    return p == null ? null : newInstance(p.get("class").asText(), p.get("config"));
  }

  static byte[] bytes(JsonNode n) throws Exception {
    return n == null || n.isNull() ? null : JSON.writeValueAsBytes(n);
  }

  static ConnectRecord toRecord(JsonNode r, JsonConverter keys, JsonConverter values,
      boolean source) throws Exception {
    String topic = r.path("topic").asText("t");
    SchemaAndValue k = keys.toConnectData(topic, bytes(r.get("key")));
    SchemaAndValue v = values.toConnectData(topic, bytes(r.get("value")));
    ConnectHeaders headers = new ConnectHeaders();
    for (JsonNode h : r.path("headers")) {
      SchemaAndValue hv = h.get(1).isNull() ? SchemaAndValue.NULL : Values.parseString(h.get(1).asText());
      headers.add(h.get(0).asText(), hv);
    }
    Long ts = r.hasNonNull("timestamp") ? r.get("timestamp").asLong() : null;
    if (source)
      return new SourceRecord(null, null, topic, r.path("partition").asInt(0), k.schema(),
          k.value(), v.schema(), v.value(), ts, headers);
    return new SinkRecord(topic, r.path("partition").asInt(0), k.schema(), k.value(), v.schema(),
        v.value(), 0L, ts, org.apache.kafka.common.record.TimestampType.CREATE_TIME, headers);
  }

  static ObjectNode fromRecord(ConnectRecord<?> o, JsonConverter keys, JsonConverter values)
      throws Exception {
    ObjectNode n = JSON.createObjectNode();
    n.put("topic", o.topic());
    n.put("partition", o.kafkaPartition());
    n.set("key", tree(keys.fromConnectData(o.topic(), o.keySchema(), o.key())));
    n.set("value", tree(values.fromConnectData(o.topic(), o.valueSchema(), o.value())));
    ArrayNode hs = n.putArray("headers");
    for (Header h : (Iterable<Header>) o.headers()) {
      ArrayNode pair = hs.addArray().add(h.key());
      if (h.value() == null) pair.addNull();
      else pair.add(Values.convertToString(h.schema(), h.value()));
    }
    if (o.timestamp() == null) n.putNull("timestamp");
    else n.put("timestamp", o.timestamp());
    return n;
  }

  static JsonNode tree(byte[] b) throws Exception {
    return b == null ? JSON.nullNode() : JSON.readTree(b);
  }
}
