// Broker chores for people and tests without Kafka's shell tools, run by tests/services/kafka.sh with the broker's
// own client jar: create topics, produce lines, consume what transactions committed.
//
//   topics BROKERS NAME[:PARTITIONS] ...   creates topics (1 partition unless given; existing ones are kept)
//   produce BROKERS TOPIC                  sends each line of standard input as a record's value
//   consume BROKERS TOPIC [SECONDS]        prints committed values (read_committed) until SECONDS pass without one
//                                          (5 when not given)

import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public class KafkaTool {
    public static void main(String[] args) throws Exception {
        if (args.length < 3) {
            System.err.println("usage: topics BROKERS NAME[:PARTITIONS]... | produce BROKERS TOPIC | consume BROKERS TOPIC [SECONDS]");
            System.exit(2);
        }
        switch (args[0]) {
            case "topics" -> topics(args[1], List.of(args).subList(2, args.length));
            case "produce" -> produce(args[1], args[2]);
            case "consume" -> consume(args[1], args[2], args.length > 3 ? Integer.parseInt(args[3]) : 5);
            default -> {
                System.err.println("unknown command " + args[0]);
                System.exit(2);
            }
        }
    }

    static void topics(String brokers, List<String> names) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", brokers);
        try (Admin admin = Admin.create(props)) {
            List<NewTopic> topics = new ArrayList<>();
            for (String name : names) {
                String[] parts = name.split(":");
                int partitions = parts.length > 1 ? Integer.parseInt(parts[1]) : 1;
                topics.add(new NewTopic(parts[0], partitions, (short) 1));
            }
            for (var entry : admin.createTopics(topics).values().entrySet()) {
                try {
                    entry.getValue().get();
                    System.out.println("created " + entry.getKey());
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException)) {
                        throw e;
                    }
                    System.out.println("exists " + entry.getKey());
                }
            }
        }
    }

    static void produce(String brokers, String topic) throws Exception {
        Properties props = new Properties();
        props.put("bootstrap.servers", brokers);
        props.put("key.serializer", StringSerializer.class.getName());
        props.put("value.serializer", StringSerializer.class.getName());
        int sent = 0;
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(props);
             BufferedReader lines = new BufferedReader(new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
            String line;
            while ((line = lines.readLine()) != null) {
                if (!line.isBlank()) {
                    producer.send(new ProducerRecord<>(topic, line));
                    sent++;
                }
            }
            producer.flush();
        }
        System.err.println("produced " + sent + " records to " + topic);
    }

    static void consume(String brokers, String topic, int quietSeconds) {
        Properties props = new Properties();
        props.put("bootstrap.servers", brokers);
        props.put("group.id", "kafka-tool-" + System.nanoTime());
        props.put("auto.offset.reset", "earliest");
        props.put("enable.auto.commit", "false");
        props.put("isolation.level", "read_committed");
        props.put("key.deserializer", StringDeserializer.class.getName());
        props.put("value.deserializer", StringDeserializer.class.getName());
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(props)) {
            consumer.subscribe(Set.of(topic));
            long quietSince = System.nanoTime();
            while (System.nanoTime() - quietSince < quietSeconds * 1_000_000_000L) {
                for (ConsumerRecord<String, String> record : consumer.poll(Duration.ofMillis(200))) {
                    System.out.println(record.value());
                    quietSince = System.nanoTime();
                }
            }
        }
    }
}
