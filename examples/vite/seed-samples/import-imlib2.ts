// seed: 安装 CallLib SDK › 步骤4: 导入模块 (或,导入 @rongcloud/imlib-v2-adapter)
//或,导入 @rongcloud/imlib-v2-adapter
import { RongIMClient, IMClient } from "rcall/imlib-v2";
