// Node mysql2 through rwsplit-proxy: text queries and prepared statements (execute).
// Usage: node check.js PORT. Prints one JSON object the Rust test checks.
const mysql = require('mysql2/promise');

(async () => {
  const port = Number(process.argv[2]);
  const conn = await mysql.createConnection({
    host: '127.0.0.1', port, user: 'app', password: 'app-password', database: 'rwsplit_test',
  });
  const reads = new Set();
  for (let i = 0; i < 10; i++) {
    const [rows] = await conn.query('SELECT @@port AS p');
    reads.add(rows[0].p);
    const [prows] = await conn.execute('SELECT @@port AS p, ? + 1 AS n', [i]);
    if (Number(prows[0].n) !== i + 1) throw new Error('bad prepared result');
    reads.add(prows[0].p);
  }
  await conn.query('CREATE TABLE IF NOT EXISTS node_t (id INT AUTO_INCREMENT PRIMARY KEY, port INT)');
  const [res] = await conn.execute('INSERT INTO node_t (port) VALUES (@@port)');
  const [w] = await conn.query('SELECT port FROM node_t WHERE id = ? FOR UPDATE', [res.insertId]);
  console.log(JSON.stringify({ reads: [...reads].sort(), write_port: w[0].port,
    last_insert_id_ok: res.insertId > 0 }));
  await conn.end();
})().catch((e) => { console.error(e); process.exit(1); });
