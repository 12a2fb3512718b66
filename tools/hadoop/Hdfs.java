// Test infrastructure only (the product is Rust): Hadoop's own HDFS and SequenceFile code, to run
// a real HDFS for the tests and to check that our SequenceFiles are Hadoop's.
//
//   Hdfs cluster DIR PORT HTTP_PORT   a MiniDFSCluster (NameNode + 1 DataNode, WebHDFS on) keeping
//                                     its data in DIR; prints "namenode=... webhdfs=..." when up.
//                                     Touch DIR/restart-namenode to restart the NameNode in place.
//   Hdfs text URI...                  prints every record of the SequenceFiles at URI (files or
//                                     directories, hidden _/. names skipped) as key<TAB>value,
//                                     read by Hadoop's SequenceFile.Reader
//   Hdfs write URI N COMPRESSION [START]  writes N records (LongWritable i, Text "record i"),
//                                     i from START (default 0), with
//                                     Hadoop's SequenceFile.Writer; COMPRESSION: NONE, RECORD or
//                                     BLOCK (DefaultCodec), or RECORD:<codec class>
import java.io.File;
import java.net.URI;
import java.util.ArrayList;
import java.util.List;
import org.apache.hadoop.conf.Configuration;
import org.apache.hadoop.fs.FileStatus;
import org.apache.hadoop.fs.FileSystem;
import org.apache.hadoop.fs.Path;
import org.apache.hadoop.hdfs.MiniDFSCluster;
import org.apache.hadoop.io.LongWritable;
import org.apache.hadoop.io.SequenceFile;
import org.apache.hadoop.io.Text;
import org.apache.hadoop.io.Writable;
import org.apache.hadoop.io.compress.CompressionCodec;
import org.apache.hadoop.io.compress.DefaultCodec;
import org.apache.hadoop.util.ReflectionUtils;

public class Hdfs {
  public static void main(String[] args) throws Exception {
    switch (args[0]) {
      case "cluster": cluster(args[1], Integer.parseInt(args[2]), Integer.parseInt(args[3])); break;
      case "text": for (int i = 1; i < args.length; i++) text(args[i]); break;
      case "write": write(args[1], Long.parseLong(args[2]), args[3], args.length > 4 ? Long.parseLong(args[4]) : 0); break;
      default: throw new IllegalArgumentException("unknown command " + args[0]);
    }
  }

  static void cluster(String dir, int port, int httpPort) throws Exception {
    Configuration conf = new Configuration();
    conf.set(MiniDFSCluster.HDFS_MINIDFS_BASEDIR, dir);
    conf.setBoolean("dfs.webhdfs.enabled", true);
    conf.setBoolean("dfs.permissions.enabled", false);
    // Small blocks are fine for tests and keep a DataNode's disk use low.
    conf.setLong("dfs.namenode.fs-limits.min-block-size", 1024);
    boolean format = !new File(dir, "name1").exists() && !new File(dir, "data").exists();
    MiniDFSCluster cluster = new MiniDFSCluster.Builder(conf)
        .nameNodePort(port).nameNodeHttpPort(httpPort).numDataNodes(1).format(format)
        .manageNameDfsDirs(true).manageDataDfsDirs(true).build();
    cluster.waitActive();
    System.out.println("namenode=hdfs://127.0.0.1:" + cluster.getNameNodePort()
        + " webhdfs=127.0.0.1:" + cluster.getNameNode().getHttpAddress().getPort());
    System.out.flush();
    File restart = new File(dir, "restart-namenode");
    while (true) {
      Thread.sleep(200);
      if (restart.delete()) {
        System.out.println("restarting the NameNode");
        System.out.flush();
        cluster.restartNameNode(true);
        System.out.println("the NameNode is back");
        System.out.flush();
      }
    }
  }

  static void text(String uri) throws Exception {
    Configuration conf = new Configuration();
    Path path = new Path(uri);
    FileSystem fs = path.getFileSystem(conf);
    List<Path> files = new ArrayList<>();
    FileStatus status = fs.getFileStatus(path);
    if (status.isDirectory()) {
      for (FileStatus s : fs.listStatus(path)) {
        String name = s.getPath().getName();
        if (s.isFile() && !name.startsWith("_") && !name.startsWith(".")) files.add(s.getPath());
      }
    } else {
      files.add(path);
    }
    StringBuilder out = new StringBuilder();
    for (Path file : files) {
      try (SequenceFile.Reader reader = new SequenceFile.Reader(conf, SequenceFile.Reader.file(file))) {
        Writable key = (Writable) ReflectionUtils.newInstance(reader.getKeyClass(), conf);
        Writable value = (Writable) ReflectionUtils.newInstance(reader.getValueClass(), conf);
        while (reader.next(key, value)) {
          out.append(key).append('\t').append(value).append('\n');
          if (out.length() > 1 << 16) {
            System.out.print(out);
            out.setLength(0);
          }
        }
      }
    }
    System.out.print(out);
    System.out.flush();
  }

  static void write(String uri, long n, String compression, long start) throws Exception {
    Configuration conf = new Configuration();
    String[] parts = compression.split(":", 2);
    SequenceFile.CompressionType type = SequenceFile.CompressionType.valueOf(parts[0]);
    CompressionCodec codec = parts.length > 1
        ? (CompressionCodec) ReflectionUtils.newInstance(Class.forName(parts[1]), conf)
        : new DefaultCodec();
    if (codec instanceof DefaultCodec) ((DefaultCodec) codec).setConf(conf);
    try (SequenceFile.Writer writer = SequenceFile.createWriter(conf,
        SequenceFile.Writer.file(new Path(uri)),
        SequenceFile.Writer.keyClass(LongWritable.class),
        SequenceFile.Writer.valueClass(Text.class),
        SequenceFile.Writer.compression(type, codec))) {
      LongWritable key = new LongWritable();
      Text value = new Text();
      for (long i = start; i < start + n; i++) {
        key.set(i);
        value.set("record " + i);
        writer.append(key, value);
      }
    }
  }
}
