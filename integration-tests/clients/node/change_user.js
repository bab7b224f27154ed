// Node mysql2 changing user (COM_CHANGE_USER) through rwsplit-proxy, then trying a wrong
// password. Usage: node change_user.js PORT USER2 PASSWORD2. Prints one JSON object.
const mysql = require('mysql2/promise');

(async () => {
  const [port, user2, password2] = [Number(process.argv[2]), process.argv[3], process.argv[4]];
  const conn = await mysql.createConnection({
    host: '127.0.0.1', port, user: 'app', password: 'app-password', database: 'rwsplit_test',
  });
  const out = {};
  out.before = (await conn.query('SELECT CURRENT_USER() AS u'))[0][0].u;
  await conn.changeUser({ user: user2, password: password2, database: 'rwsplit_test' });
  const [rows] = await conn.query('SELECT CURRENT_USER() AS u, DATABASE() AS d');
  out.after = rows[0].u;
  out.db = rows[0].d;
  try {
    await conn.changeUser({ user: 'app', password: 'wrong-password', database: 'rwsplit_test' });
    out.wrong = 'accepted';
  } catch (e) {
    out.wrong = e.errno;
  }
  try {
    await conn.query('SELECT 1');
    out.after_wrong = 'open';
  } catch (e) {
    out.after_wrong = 'closed';
  }
  console.log(JSON.stringify(out));
  conn.destroy();
})().catch((e) => { console.error(e); process.exit(1); });
