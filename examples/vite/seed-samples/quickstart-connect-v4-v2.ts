// seed: 实现音视频通话 › 步骤 4: 建立 IM 连接 (IMLib 2.X / 4.X)
import { RongIMClient } from 'rcall/imlib-v2';

// 与 IM 服务建立连接 (IMLib 4.X)
imClient.connect({ token: '<user-token>' })
  .then((user) => {
    console.log("链接成功, 链接用户 id 为: ", user.id);
  })
  .catch((error) => {
    console.log("链接失败: ", error.code, error.msg);
  });
// 与 IM 服务建立连接 (IMLib 2.X)
// (the seed prints `RongIMClient.connect(('<user-token>', {`: an extra parenthesis, unbalanced)
RongIMClient.connect('<user-token>', {
  onSuccess: (userId) => {
    console.log('连接成功, 用户 ID 为', userId);
  },
  onTokenIncorrect: function() {
    console.log('连接失败, 失败原因: token 无效');
  },
  onError: function(errorCode) {
    console.log('连接失败, 失败原因: ', errorCode);
  }
});
