// Reads a whole topic with Kafka's own Java client (kafka-clients, from the broker's jars):
// an ordinary client outside the project. It verifies every batch's CRC (check.crcs) and
// recomputes, for every record, the partition the Java producer's default partitioner would
// choose for its key. Prints one tab-separated line per record:
//   REC <partition> <javaPartitionForKey> <headerCount> <key> <value>
// Run with Java's single-file launcher:
//   java -cp '.cache/kafka/libs/*' test/support/java/ReadTopic.java BROKERS TOPIC EXPECTED
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.PartitionInfo;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.utils.Utils;

public class ReadTopic {
  public static void main(String[] args) {
    String brokers = args[0];
    String topic = args[1];
    int expected = Integer.parseInt(args[2]);
    Properties props = new Properties();
    props.put("bootstrap.servers", brokers);
    props.put("key.deserializer", StringDeserializer.class.getName());
    props.put("value.deserializer", StringDeserializer.class.getName());
    props.put("enable.auto.commit", "false");
    props.put("check.crcs", "true");
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
      List<TopicPartition> partitions = new ArrayList<>();
      for (PartitionInfo info : consumer.partitionsFor(topic)) partitions.add(new TopicPartition(topic, info.partition()));
      consumer.assign(partitions);
      consumer.seekToBeginning(partitions);
      int read = 0;
      long deadline = System.currentTimeMillis() + 30_000;
      while (read < expected && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
          int javaPartition = r.key() == null ? -1
              : Utils.toPositive(Utils.murmur2(r.key().getBytes(StandardCharsets.UTF_8))) % partitions.size();
          int headers = r.headers().toArray().length;
          System.out.println("REC\t" + r.partition() + "\t" + javaPartition + "\t" + headers + "\t" + r.key() + "\t" + r.value());
          read++;
        }
      }
    }
  }
}
