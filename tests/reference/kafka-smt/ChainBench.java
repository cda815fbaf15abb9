// The Java arm of `scripts/bench transforms`: the reference transforms chained as a Kafka Connect
// worker runs them (JsonConverter in, the chain, JsonConverter out), in a warmed-up loop over the
// records of a JSON-lines file, read into memory first.
//
// Usage: ChainBench FILE TOPIC WARMUP_RECORDS CHAIN_JSON
//   CHAIN_JSON: [{"class": ..., "config": {..}}, ..]; values carry the {schema, payload} envelope.
// Prints one JSON line: {"records", "seconds", "records_per_s", "bytes_out"}.
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.BufferedReader;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import org.apache.kafka.connect.connector.ConnectRecord;
import org.apache.kafka.connect.data.SchemaAndValue;
import org.apache.kafka.connect.json.JsonConverter;
import org.apache.kafka.connect.source.SourceRecord;
import org.apache.kafka.connect.transforms.Transformation;

public class ChainBench {
  public static void main(String[] args) throws Exception {
    List<byte[]> records = new ArrayList<>();
    try (BufferedReader in = Files.newBufferedReader(Path.of(args[0]), StandardCharsets.UTF_8)) {
      for (String line; (line = in.readLine()) != null; )
        if (!line.isEmpty()) records.add(line.getBytes(StandardCharsets.UTF_8));
    }
    String topic = args[1];
    int warmup = Integer.parseInt(args[2]);
    List<Transformation> chain = chain(new ObjectMapper().readTree(args[3]));
    JsonConverter converter = new JsonConverter();
    Map<String, Object> cfg = new HashMap<>();
    cfg.put("schemas.enable", true);
    converter.configure(cfg, false);

    run(records, Math.min(warmup, records.size()), topic, chain, converter);
    long start = System.nanoTime();
    long bytes = run(records, records.size(), topic, chain, converter);
    double seconds = (System.nanoTime() - start) / 1e9;
    System.out.printf("{\"records\": %d, \"seconds\": %.3f, \"records_per_s\": %.1f, "
        + "\"bytes_out\": %d}%n", records.size(), seconds, records.size() / seconds, bytes);
  }

  @SuppressWarnings("unchecked")
  static long run(List<byte[]> records, int n, String topic, List<Transformation> chain,
      JsonConverter converter) {
    long bytes = 0;
    for (int i = 0; i < n; ++i) {
      SchemaAndValue v = converter.toConnectData(topic, records.get(i));
      ConnectRecord r = new SourceRecord(null, null, topic, 0, null, null, v.schema(), v.value(),
          1700000000000L);
      for (Transformation t : chain) {
        r = (ConnectRecord) t.apply(r);
        if (r == null) break;
      }
      if (r == null) continue;
      byte[] out = converter.fromConnectData(r.topic(), r.valueSchema(), r.value());
      bytes += out == null ? 0 : out.length;
    }
    return bytes;
  }

  static List<Transformation> chain(JsonNode spec) throws Exception {
    List<Transformation> out = new ArrayList<>();
    for (JsonNode step : spec) {
      Transformation t = (Transformation) Class.forName(step.get("class").asText())
          .getDeclaredConstructor().newInstance();
      Map<String, Object> cfg = new HashMap<>();
      for (Iterator<Map.Entry<String, JsonNode>> it = step.get("config").fields(); it.hasNext(); ) {
        Map.Entry<String, JsonNode> e = it.next();
        cfg.put(e.getKey(), e.getValue().asText());
      }
      t.configure(cfg);
      out.add(t);
    }
    return out;
  }
}
